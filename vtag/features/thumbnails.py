"""Small keyframe thumbnails of a video, kept while its frames stream past.

`ThumbnailKeeper` sees every sampled frame once and keeps a downscaled copy of evenly spaced ones,
without knowing the video's length up front: it keeps every `stride`-th frame and, when it holds
twice the wanted count, drops every other kept thumbnail and doubles the stride. So it never holds
more than 2 x count thumbnails (each a few KB), never a full frame. JPEG bytes and `data:` URIs come
out at the end (the HTML report inlines them; the timeline draws them).
"""

from __future__ import annotations

import base64
import io

import numpy as np

THUMBNAIL_WIDTH = 160  # px; small enough that a card's JPEG is a few KB
JPEG_QUALITY = 70
DATA_URI_PREFIX = "data:image/jpeg;base64,"


def downscale(rgb: np.ndarray, width: int = THUMBNAIL_WIDTH) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [h, width, 3] keeping the aspect ratio (never upscales)."""
    from PIL import Image

    height, src_width = rgb.shape[:2]
    if src_width <= width:
        return np.ascontiguousarray(rgb)
    new_height = max(1, round(height * width / src_width))
    return np.asarray(Image.fromarray(rgb).resize((width, new_height), Image.BILINEAR))


def jpeg_bytes(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def data_uri(jpeg: bytes) -> str:
    return DATA_URI_PREFIX + base64.b64encode(jpeg).decode("ascii")


def is_thumbnail_uri(value: object) -> bool:
    """Only inline base64 JPEGs are trusted in a report: never a URL that would reach the network."""
    return isinstance(value, str) and value.startswith(DATA_URI_PREFIX) and len(value) > len(DATA_URI_PREFIX)


class ThumbnailKeeper:
    """Call `add(time_s, rgb)` for each sampled frame; `thumbnails()` gives up to `count` evenly
    spaced (time_s, small rgb) pairs."""

    def __init__(self, count: int = 8, width: int = THUMBNAIL_WIDTH):
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.count, self.width = count, width
        self.stride = 1
        self.seen = 0
        self.kept: list[tuple[float, np.ndarray]] = []

    def add(self, time_s: float, rgb: np.ndarray) -> None:
        index = self.seen
        self.seen += 1
        if index % self.stride:
            return
        self.kept.append((float(time_s), downscale(rgb, self.width)))
        if len(self.kept) >= 2 * self.count:
            self.kept = self.kept[::2]
            self.stride *= 2

    def thumbnails(self) -> list[tuple[float, np.ndarray]]:
        if len(self.kept) <= self.count:
            return list(self.kept)
        picks = np.linspace(0, len(self.kept) - 1, self.count).round().astype(int)
        return [self.kept[i] for i in picks]


def keyframe_uri(thumbnails: list[tuple[float, np.ndarray]]) -> str | None:
    """The thumbnail nearest the middle of the video, as a data: URI: more telling than the first
    frame, which is often a black fade-in or a title card."""
    if not thumbnails:
        return None
    return data_uri(jpeg_bytes(thumbnails[len(thumbnails) // 2][1]))

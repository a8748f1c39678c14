"""Still images (JPEG, PNG, ...) decoded by Pillow, as YouTube-8M's extractor test decodes them.

FFmpeg opens a still image as a one-frame video, but its YUV -> RGB conversion upsamples a JPEG's
chroma without interpolation: on the golden frame of Google's extractor test
(`AO7u7fwGzJQ_at_second_0.jpg`) half the values differ from libjpeg's by up to 63 levels. Pillow
hands the file to libjpeg / libpng and converts with `Image.convert("RGB")`, the decode the
reference features were computed from, so images are read with it. EXIF orientation is not
applied (neither PIL's `open` nor the reference applies it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vtag.errors import VtagError

# PyAV/FFmpeg demuxers that mean "this file is one still image", not a video.
_IMAGE_DEMUXERS = ("image2", "jpeg_pipe", "png_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe",
                   "pgm_pipe", "ppm_pipe", "pam_pipe", "qoi_pipe")


def is_still_image(container) -> bool:
    """Whether an opened PyAV container holds a single still image (by its demuxer)."""
    names = set(container.format.name.split(","))
    return bool(names & set(_IMAGE_DEMUXERS))


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3], exactly as `np.asarray(Image.open(path).convert("RGB"))`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VtagError(f"{path}: cannot decode the image ({' '.join(str(exc).split())})") from None

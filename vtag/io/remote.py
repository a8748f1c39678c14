"""Inputs from object stores: `s3://`, `gs://`, `https://` (any fsspec protocol) URLs wherever vtag
reads record files or media. fsspec is an optional extra (`pip install 'vtag[remote]'`); s3:// and
gs:// also need fsspec's s3fs / gcsfs, which fsspec names in its own message.

Record files are read whole (as local ones are: a YT8M shard is ~100-300 MB). Media files are opened
as seekable file objects that fetch blocks on demand (fsspec's read-ahead cache), so a 10 GB video is
streamed through the decoder, never loaded at once. URLs stay `str` throughout: `pathlib.Path`
would fold `https://` into `https:/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from vtag.errors import VtagError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
MEDIA_BLOCK_SIZE = 8 * 2**20  # bytes per ranged read when decoding media from a URL


def is_url(path: object) -> bool:
    return isinstance(path, str) and bool(_URL.match(path)) and not path.startswith("file://")


def _filesystem(url: str):
    try:
        import fsspec
    except ImportError:
        raise VtagError(f"{url}: reading URLs needs fsspec: pip install 'vtag[remote]'") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:  # e.g. s3fs / gcsfs / aiohttp missing: fsspec's message names it
        raise VtagError(f"{url}: {exc} (or pip install 'vtag[remote]')") from None
    except ValueError as exc:
        raise VtagError(f"{url}: not a URL fsspec can open ({exc})") from None


def _problem(url: str, exc: BaseException) -> VtagError:
    if isinstance(exc, FileNotFoundError):
        return VtagError(f"{url}: no such file")
    return VtagError(f"{url}: cannot read ({type(exc).__name__}: {exc})".replace("\n", " "))


def open_url(url: str, block_size: int = MEDIA_BLOCK_SIZE):
    """A seekable binary file object on `url`, reading ranges of `block_size` as they are needed."""
    fs, path = _filesystem(url)
    try:
        return fs.open(path, "rb", block_size=block_size)
    except Exception as exc:
        raise _problem(url, exc) from None


def read_bytes(url: str) -> bytes:
    fs, path = _filesystem(url)
    try:
        return fs.cat_file(path)
    except Exception as exc:
        raise _problem(url, exc) from None


def size(url: str) -> int | None:
    fs, path = _filesystem(url)
    try:
        return fs.size(path)
    except Exception as exc:
        raise _problem(url, exc) from None


def name(url: str) -> str:
    """The last component of a URL's path (query and fragment dropped): a file name for ids."""
    return PurePosixPath(url.split("?", 1)[0].split("#", 1)[0].rstrip("/")).name


def stem(url: str) -> str:
    return PurePosixPath(name(url)).stem


def suffix(url: str) -> str:
    return PurePosixPath(name(url)).suffix.lower()


def _with_protocol(url: str, found: str, fs) -> str:
    return fs.unstrip_protocol(found) if not is_url(found) else found


def expand_url(url: str, suffixes: Iterable[str], recursive: bool = True) -> list[str]:
    """A URL to the files it names: itself when it is a file, the files with `suffixes` under it when
    it is a folder (prefix) of an object store, the matches when it holds a glob; sorted."""
    fs, path = _filesystem(url)
    suffixes = tuple(s.lower() for s in suffixes)
    try:
        if any(ch in path for ch in "*?["):
            found = sorted(fs.glob(path))
        elif url.startswith(("http://", "https://")) or fs.isfile(path):
            return [url]  # an HTTP server has no listing to trust: a URL there is one file
        elif fs.isdir(path):
            listed = fs.find(path) if recursive else fs.ls(path, detail=False)
            found = sorted(p for p in listed if PurePosixPath(p).suffix.lower() in suffixes and fs.isfile(p))
        else:
            raise FileNotFoundError(path)
    except VtagError:
        raise
    except Exception as exc:
        raise _problem(url, exc) from None
    if not found:
        raise VtagError(f"{url}: matches no {' / '.join(suffixes) or ''} files")
    return [_with_protocol(url, p, fs) for p in found]

"""What the commands take as inputs: `-` for a list of paths on stdin (one a line, as `find` or `ls`
print them), and for `vtag classify` quoted globs and folders of record files."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from vtag.errors import VtagError

STDIN = "-"


def with_stdin(inputs: list[str]) -> list[str]:
    """`inputs` with each `-` replaced by the paths read from stdin (blank lines skipped)."""
    if STDIN not in inputs:
        return inputs
    if sys.stdin is None or sys.stdin.isatty():
        raise VtagError("`-` reads file paths from stdin, one a line: pipe them in, e.g. `ls *.tfrecord | vtag info -`")
    listed = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not listed:
        raise VtagError("`-`: stdin held no file paths (one a line)")
    out: list[str] = []
    for raw in inputs:
        out.extend(listed if raw == STDIN else [raw])
    return out


def classify_inputs(inputs: list[str]) -> list[str]:
    """Files and URLs as given; a glob the shell did not expand (it was quoted) -> its files; a folder
    of record files -> its record files. A folder of videos is `vtag batch`'s work."""
    from vtag.io.paths import TFRECORD_SUFFIXES, expand_paths
    from vtag.io.remote import is_url

    out: list[str] = []
    for raw in with_stdin(inputs):
        path = Path(raw).expanduser()
        if is_url(raw) or path.is_file():
            out.append(raw)
        elif path.is_dir():
            if not any(p.name.endswith(TFRECORD_SUFFIXES) for p in path.rglob("*") if p.is_file()):
                raise VtagError(f"{path} is a folder without record files: use `vtag batch {raw}` to tag every "
                                "video in it")
            out.extend(str(p) for p in expand_paths(path))
        elif glob.has_magic(raw):
            matches = sorted(m for m in glob.glob(os.path.expanduser(raw), recursive=True) if Path(m).is_file())
            if not matches:
                raise VtagError(f"{raw}: pattern matches no files")
            out.extend(matches)
        else:
            raise VtagError(f"{raw}: no such file or directory")
    return list(dict.fromkeys(out))  # a file named twice is tagged once


# the first bytes of the containers people hand to `vtag info` by mistake
_MEDIA_MAGIC = (b"\x1aE\xdf\xa3", b"RIFF", b"ID3", b"OggS", b"fLaC", b"FLV", b"\xff\xfb", b"\xff\xf3")


def _looks_like_media(path: Path) -> bool:
    from vtag.tasks.classify import MEDIA_SUFFIXES

    if path.suffix.lower() in MEDIA_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" or head.startswith(_MEDIA_MAGIC)


def refuse_media(inputs: list[str]) -> list[str]:
    """Record-file commands (info, eval): a video or audio file named here gets told where it belongs,
    instead of a TFRecord framing error and a --skip-bad hint that cannot help."""
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_file() and not path.name.endswith((".tfrecord", ".tfrecords")) and _looks_like_media(path):
            raise VtagError(f"{raw} is a video or audio file, not a record file: tag it with `vtag classify {raw}`, "
                            f"or turn it into records with `vtag extract {raw} -o {path.stem}.tfrecord`")
    return inputs


# the official file each role of `vtag weights import --unverified` stands in for
_USER_ROLES = {"vggish": "vggish_model.ckpt", "vggish_pca": "vggish_pca_params.npz"}


def require_extractor_weights(inputs: list[str], random_weights: bool) -> None:
    """Before a model or an extractor loads (seconds of imports): media inputs need the official
    extractor weights; name every missing file and every way to get them."""
    from vtag.tasks.classify import is_record_file

    if random_weights or all(is_record_file(raw) for raw in inputs):
        return
    from vtag.io.user_weights import unverified_path
    from vtag.weights import cache_dir, missing_for_extraction

    missing = missing_for_extraction(official for role, official in _USER_ROLES.items() if unverified_path(role))
    if missing:
        raise VtagError(f"tagging video or audio needs the official feature-extractor weights, and "
                        f"{len(missing)} {'file is' if len(missing) == 1 else 'files are'} missing from {cache_dir()}: "
                        f"{', '.join(missing)}; fetch them with `vtag weights pull`, or install local copies with "
                        "`vtag weights import FILE...`; for a test run without them, add --random-weights "
                        "(the labels are then not meaningful)")

"""The official feature-extractor weight files: a registry, a local cache, downloads and imports.

Files live in `$VTAG_CACHE`, else `$XDG_CACHE_HOME/vtag`, else `~/.cache/vtag`. Everything that enters the cache is checked first:
the full sha256 where it is published, the sha256 prefix that torchvggish puts in its file names,
and, for `yt8m_pca.tgz` (whose own checksum is not published), the sha256 of `mean.npy` and
`eigenvals.npy` plus the array header of `eigenvecs.npy`. Archives are never unpacked with
`tarfile.extract`: only the expected members are read, as regular files, into paths chosen here.
Nothing in these files is ever executed; torch files are read with `weights_only=True` by the loaders.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from vtag.errors import VtagError
from vtag.io.atomic import atomic_write_text

CACHE_ENV = "VTAG_CACHE"
_CHUNK = 1 << 20
_MAX_MEMBER_BYTES = 64 << 20  # eigenvecs.npy is 16 MiB; anything far larger is not ours
_USER_AGENT = "vtag-weights/0.1"


@dataclass(frozen=True)
class Member:
    """A file inside an archive. `sha256` where it is known; otherwise `npy_shape` is checked."""

    name: str
    sha256: str | None = None
    npy_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class WeightFile:
    name: str
    url: str
    sha256: str | None  # full hex digest, or a hex prefix of it (torchvggish's names carry 8 digits)
    size: int | None
    description: str
    members: tuple[Member, ...] = field(default_factory=tuple)  # archives: what gets installed
    fallback_for: str | None = None  # a port of that official file: pulled only if the official one fails

    @property
    def is_archive(self) -> bool:
        return bool(self.members)

    @property
    def install_name(self) -> str:
        """Archives are unpacked into a folder named after them (`yt8m_pca.tgz` -> `yt8m_pca/`)."""
        return self.name.split(".", 1)[0] if self.is_archive else self.name


WEIGHT_FILES: dict[str, WeightFile] = {
    f.name: f
    for f in (
        WeightFile(
            "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
            None,
            "Inception-v3 (TF inception-2015-12-05) ported by pytorch-fid: rgb pool_3 features",
        ),
        WeightFile(
            "yt8m_pca.tgz",
            "http://data.yt8m.org/yt8m_pca.tgz",
            None,
            None,
            "YouTube-8M visual PCA: mean, eigenvalues, eigenvectors (2048 -> 1024, whitened)",
            (
                Member("mean.npy", "3f8db8e33e0005e8ae8e70a7dd3efd4856565e1bafe4c86d8b33c30d9623a33a"),
                Member("eigenvals.npy", "ad0d08dd2cb7981cbb0b9e532b0297fb6c720c233ba2e6b4420b56228eab4100"),
                Member("eigenvecs.npy", None, (2048, 2048)),
            ),
        ),
        WeightFile(
            "vggish_model.ckpt",
            "https://storage.googleapis.com/audioset/vggish_model.ckpt",
            "0962b1914e3e053922d957c45bc84a78c985765641dc6bceeeb3a7d8dfecfdf6",
            291_108_469,
            "VGGish as released with AudioSet (TF V1 checkpoint, read without TensorFlow)",
        ),
        WeightFile(
            "vggish_pca_params.npz",
            "https://storage.googleapis.com/audioset/vggish_pca_params.npz",
            "4d878af3e306defbfb37095365aa7e5a6cecb86bad13e859e626151c4e6a8b9d",
            73020,
            "VGGish PCA parameters as released with AudioSet",
        ),
        WeightFile(
            "vggish-10086976.pth",
            "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
            "10086976",
            None,
            "VGGish ported by torchvggish (fallback for vggish_model.ckpt)",
            fallback_for="vggish_model.ckpt",
        ),
        WeightFile(
            "vggish_pca_params-970ea276.pth",
            "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
            "vggish_pca_params-970ea276.pth",
            "970ea276",
            None,
            "VGGish PCA parameters, torchvggish's pickled copy (fallback for vggish_pca_params.npz)",
            fallback_for="vggish_pca_params.npz",
        ),
    )
}


class _StatusRow(NamedTuple):
    name: str
    present: bool
    verified: bool
    path: Path


class WeightStatus(_StatusRow):
    """(name, present, verified, path); `detail` says what is missing or wrong, if anything."""

    def __new__(cls, name: str, present: bool, verified: bool, path: Path, detail: str = ""):
        row = super().__new__(cls, name, present, verified, path)
        row.detail = detail
        return row


def cache_dir() -> Path:
    """$VTAG_CACHE, else $XDG_CACHE_HOME/vtag (the XDG rule: only an absolute path counts), else ~/.cache/vtag."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "vtag"
    return Path.home() / ".cache" / "vtag"


def _registry(registry: Mapping[str, WeightFile] | None) -> Mapping[str, WeightFile]:
    return WEIGHT_FILES if registry is None else registry


def _lookup(name: str, registry: Mapping[str, WeightFile] | None) -> WeightFile:
    files = _registry(registry)
    if name not in files:
        raise VtagError(f"unknown weight file {name!r}; known: {', '.join(files)} (see `vtag weights`)")
    return files[name]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha_matches(digest: str, expected: str | None) -> bool:
    return expected is None or digest.startswith(expected.lower())


def _npy_header_ok(path: Path, shape: tuple[int, ...]) -> bool:
    """Reads only the .npy header: the shape and a plain little-endian float dtype."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                got_shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                got_shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except (OSError, ValueError):
        return False
    return tuple(got_shape) == tuple(shape) and dtype.kind == "f" and dtype.byteorder in "<=|"


def _member_ok(path: Path, member: Member) -> bool:
    if member.sha256 is not None:
        return sha256_file(path) == member.sha256
    if member.npy_shape is not None:
        return _npy_header_ok(path, member.npy_shape)
    return True


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _file_verified(path: Path, expected: str | None) -> bool:
    """sha256 check of a big file, remembered in a stamp beside it (keyed on size and mtime) so
    loading a model does not re-hash hundreds of megabytes each time."""
    stat = path.stat()
    key = f"{stat.st_size} {stat.st_mtime_ns}"
    stamp = _stamp_path(path)
    try:
        recorded_key, digest = stamp.read_text().rsplit(" ", 1)
        if recorded_key == key:
            return _sha_matches(digest, expected)
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    if _sha_matches(digest, expected):
        try:
            atomic_write_text(stamp, f"{key} {digest}")
        except OSError:
            pass  # a read-only cache still works, it just re-hashes
        return True
    return False


def _check(entry: WeightFile, root: Path) -> WeightStatus:
    path = root / entry.install_name
    if entry.is_archive:
        present_members = [m for m in entry.members if (path / m.name).is_file()]
        missing = [m.name for m in entry.members if m not in present_members]
        bad = [m.name for m in present_members if not _member_ok(path / m.name, m)]
        present = not missing
        detail = "; ".join(filter(None, [
            f"missing {', '.join(missing)}" if missing and present_members else "",
            f"failed check: {', '.join(bad)}" if bad else "",
        ]))
        return WeightStatus(entry.name, present, present and not bad, path, detail)
    if not path.is_file():
        return WeightStatus(entry.name, False, False, path, "")
    ok = _file_verified(path, entry.sha256)
    return WeightStatus(entry.name, True, ok, path, "" if ok else "sha256 mismatch")


def status(registry: Mapping[str, WeightFile] | None = None) -> list[WeightStatus]:
    root = cache_dir()
    return [_check(entry, root) for entry in _registry(registry).values()]


def weight_path(name: str, required: bool = True,
                registry: Mapping[str, WeightFile] | None = None) -> Path | None:
    """The installed, verified path of a weight file (a folder for archives). Missing or corrupt:
    VtagError naming the file and the fix when `required`, else None."""
    entry = _lookup(name, registry)
    state = _check(entry, cache_dir())
    if state.verified:
        return state.path
    if not required:
        return None
    if state.present:
        raise VtagError(f"weight file {name} at {state.path} fails its check ({state.detail}); "
                        f"re-fetch it with `vtag weights pull {name}` or `vtag weights import FILE`")
    found = f", {state.detail}" if state.detail else ""
    raise VtagError(f"missing weight file {name} (looked in {state.path}{found}); fetch it with "
                    f"`vtag weights pull {name}` or `vtag weights import FILE` (see `vtag weights`)")


# ---- installing --------------------------------------------------------------------------------


def _install_file(source: Path, target: Path, move: bool) -> None:
    """Copy or move a checked file into place atomically (a temp file in the target folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if move:
            os.replace(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _stamp_path(target).unlink(missing_ok=True)


def _archive_member_name(raw: str, members: Iterable[Member]) -> str | None:
    """The registered member a tar entry stands for, or None. Accepts `mean.npy`, `./mean.npy` and
    one leading folder (`yt8m_pca/mean.npy`); anything absolute or with `..` is ignored."""
    name = posixpath.normpath(raw)
    if name.startswith("/") or ".." in name.split("/"):
        return None
    parts = name.split("/")
    if len(parts) > 2:
        return None
    wanted = {m.name for m in members}
    return parts[-1] if parts[-1] in wanted else None


def _install_archive(entry: WeightFile, archive: Path, root: Path) -> None:
    """Unpack the expected members of a tgz into a fresh folder, check them, then swap it in."""
    target = root / entry.install_name
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{entry.install_name}."))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for info in tar:
                    member_name = _archive_member_name(info.name, entry.members)
                    if member_name is None or not info.isreg():
                        continue
                    if info.size > _MAX_MEMBER_BYTES:
                        raise VtagError(f"{archive}: member {info.name} is {info.size} bytes, too large "
                                        f"for {entry.name}; the download is not the official archive")
                    source = tar.extractfile(info)
                    with open(staging / member_name, "wb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
                        out.flush()
                        os.fsync(out.fileno())
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise VtagError(f"{archive}: cannot unpack {entry.name} ({exc}); download it again with "
                            f"`vtag weights pull {entry.name}`") from None
        for member in entry.members:
            path = staging / member.name
            if not path.is_file():
                raise VtagError(f"{archive}: {entry.name} lacks {member.name}; not the official archive")
            if not _member_ok(path, member):
                raise VtagError(f"{archive}: {member.name} fails its check; not the official {entry.name}")
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=root, prefix=f".{entry.install_name}.old."))
            os.replace(target, old / "x")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _install_checked(entry: WeightFile, source: Path, root: Path, move: bool) -> Path:
    """Check a whole downloaded/imported file against the registry, then install it."""
    if entry.is_archive:
        _install_archive(entry, source, root)
        if move:
            source.unlink(missing_ok=True)
        return root / entry.install_name
    if entry.size is not None and source.stat().st_size != entry.size:
        raise VtagError(f"{source}: {source.stat().st_size} bytes, but {entry.name} is {entry.size} bytes; "
                        f"not the official file")
    digest = sha256_file(source)
    if not _sha_matches(digest, entry.sha256):
        raise VtagError(f"{source}: sha256 {digest[:16]}... does not match {entry.name} "
                        f"({entry.sha256[:16]}...); not the official file")
    target = root / entry.install_name
    _install_file(source, target, move)
    stat = target.stat()
    try:
        atomic_write_text(_stamp_path(target), f"{stat.st_size} {stat.st_mtime_ns} {digest}")
    except OSError:
        pass
    return target


# ---- download ----------------------------------------------------------------------------------


def _download(url: str, part: Path, task_update) -> None:
    """Fetch `url` into `part`, continuing a partial `.part` file with an HTTP Range request."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # the partial file is already complete; the checksum decides
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start over
        total = response.headers.get("Content-Length")
        total = int(total) + offset if total is not None else None
        task_update(completed=offset, total=total)
        with open(part, "ab" if offset else "wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                offset += len(chunk)
                task_update(completed=offset)
            out.flush()
            os.fsync(out.fileno())
    if total is not None and offset != total:
        raise OSError(f"connection closed after {offset} of {total} bytes")


def _pull_one(entry: WeightFile, root: Path, bar, base_url_override: str | None) -> Path:
    state = _check(entry, root)
    if state.verified:
        return state.path
    url = entry.url if base_url_override is None else base_url_override.rstrip("/") + "/" + entry.name
    part = root / f"{entry.name}.part"
    task = bar.add_task(entry.name, total=entry.size)
    try:
        _download(url, part, lambda **kw: bar.update(task, **kw))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise VtagError(f"download of {entry.name} from {url} failed ({exc}); run `vtag weights pull` "
                        f"again to resume, or fetch it elsewhere and `vtag weights import` it") from None
    try:
        return _install_checked(entry, part, root, move=True)
    except VtagError:
        part.unlink(missing_ok=True)  # a bad file must not be resumed next time
        raise


def pull(names: Iterable[str] | None = None, base_url_override: str | None = None, progress: bool = True,
         registry: Mapping[str, WeightFile] | None = None) -> list[Path]:
    """Download weight files into the cache, checked, atomically.

    By default: every official file; a port registered as `fallback_for` one of them is fetched only
    when the official file cannot be (with a warning). Named files are fetched as named.
    `base_url_override` replaces each URL's folder (a mirror that serves the same file names).
    An interrupted download leaves `<name>.part`, which the next pull continues.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    files = _registry(registry)
    if names:
        plan = [(_lookup(n, registry), []) for n in names]
    else:
        plan = [(e, [f for f in files.values() if f.fallback_for == e.name])
                for e in files.values() if e.fallback_for is None]
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    installed = []
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        for entry, fallbacks in plan:
            try:
                installed.append(_pull_one(entry, root, bar, base_url_override))
            except VtagError as exc:
                if not fallbacks:
                    raise
                names_text = ", ".join(f.name for f in fallbacks)
                console.print(f"[bold yellow]warning:[/] {exc}; fetching the port {names_text} instead",
                              highlight=False, soft_wrap=True)
                installed.extend(_pull_one(f, root, bar, base_url_override) for f in fallbacks)
    return installed


# ---- import ------------------------------------------------------------------------------------


def _identify(path: Path, digest: str, files: Mapping[str, WeightFile]) -> tuple[WeightFile, Member | None]:
    """Which registered file (or archive member) a local file is: by checksum, then by name."""
    for entry in files.values():
        if entry.sha256 is not None and len(entry.sha256) == 64 and digest == entry.sha256:
            return entry, None
        for member in entry.members:
            if member.sha256 is not None and digest == member.sha256:
                return entry, member
    for entry in files.values():
        if path.name == entry.name:
            return entry, None
        stem = entry.install_name
        for member in entry.members:
            if path.name in (member.name, f"{stem}_{member.name}"):
                return entry, member
    raise VtagError(f"{path}: not a known weight file (by name or sha256; the files are listed by "
                    f"`vtag weights`); to install your own weights unchecked: `vtag weights import --unverified FILE`")


def import_files(paths: Iterable[str | Path], registry: Mapping[str, WeightFile] | None = None) -> list[Path]:
    """Install local copies of weight files, each checked exactly as a download would be. A file is
    recognised by its sha256, or by its registered name (`mean.npy` and `yt8m_pca_mean.npy` both
    name the archive member)."""
    files = _registry(registry)
    root = cache_dir()
    installed = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise VtagError(f"{path}: no such file to import")
        digest = sha256_file(path)
        entry, member = _identify(path, digest, files)
        if member is None:
            installed.append(_install_checked(entry, path, root, move=False))
            continue
        if not _member_ok(path, member):
            raise VtagError(f"{path}: fails the check for {entry.name} member {member.name}; not the official file")
        target = root / entry.install_name / member.name
        _install_file(path, target, move=False)
        installed.append(target)
    return installed


def missing_for_extraction(stood_in: Iterable[str] = ()) -> list[str]:
    """The official files feature extraction needs that are not installed and verified. A file counts
    as present when a verified port of it (`fallback_for`) is, or when it is named in `stood_in` (the
    caller's list of files a user's own weights replace)."""
    root = cache_dir()
    replaced = set(stood_in)
    verified = {name for name, entry in WEIGHT_FILES.items() if _check(entry, root).verified}
    missing = []
    for name, entry in WEIGHT_FILES.items():
        if entry.fallback_for or name in replaced or name in verified:
            continue
        if any(port.fallback_for == name and port.name in verified for port in WEIGHT_FILES.values()):
            continue
        missing.append(name)
    return missing

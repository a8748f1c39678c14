"""Weight cache: downloads from a local HTTP server (Range resume, checksum failures, archives),
imports, status and the CLI. Fake files are registered in a test-only registry."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from typer.testing import CliRunner

from vtag import weights
from vtag.errors import VtagError
from vtag.weights import Member, WeightFile, import_files, pull, status, weight_path


class _Server:
    """Serves `files` (name -> bytes); honours `Range: bytes=N-` unless `ignore_range`."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ignore_range = False
        self.cut_after: int | None = None  # send only this many body bytes, then drop the connection
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                end = len(body) if server.cut_after is None else start + server.cut_after
                self.wfile.write(body[start:end])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("VTAG_CACHE", str(root))
    return root


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(server, name: str, data: bytes, sha: str | None = None, **kw) -> WeightFile:
    server.files[name] = data
    return WeightFile(name, f"{server.url}/{name}", _sha(data) if sha is None else sha, kw.pop("size", None),
                      "test file", **kw)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


# ---- downloads ----------------------------------------------------------------------------------


def test_full_download_installs_a_verified_file(server, cache):
    data = np.random.default_rng(0).bytes(300_000)
    registry = {"model.pth": _entry(server, "model.pth", data, size=len(data))}
    paths = pull(progress=False, registry=registry)
    assert paths == [cache / "model.pth"]
    assert (cache / "model.pth").read_bytes() == data
    assert not (cache / "model.pth.part").exists()
    assert [(s.name, s.present, s.verified) for s in status(registry)] == [("model.pth", True, True)]
    name, present, verified, path = status(registry)[0]
    assert (name, present, verified, path, status(registry)[0].detail) == ("model.pth", True, True, cache / "model.pth", "")
    assert weight_path("model.pth", registry=registry) == cache / "model.pth"
    assert server.requests == [("model.pth", None)]
    pull(progress=False, registry=registry)  # already verified: nothing fetched again
    assert len(server.requests) == 1


def test_download_resumes_a_partial_file_with_a_range_request(server, cache):
    data = np.random.default_rng(1).bytes(250_000)
    registry = {"model.pth": _entry(server, "model.pth", data)}
    cache.mkdir()
    (cache / "model.pth.part").write_bytes(data[:100_000])
    pull(progress=False, registry=registry)
    assert server.requests == [("model.pth", "bytes=100000-")]
    assert (cache / "model.pth").read_bytes() == data


def test_interrupted_download_fails_cleanly_then_resumes(server, cache):
    data = np.random.default_rng(5).bytes(3_000_000)
    registry = {"model.pth": _entry(server, "model.pth", data)}
    server.cut_after = 2_500_000
    with pytest.raises(VtagError, match="again to resume"):
        pull(progress=False, registry=registry)
    kept = (cache / "model.pth.part").stat().st_size
    assert 0 < kept <= 2_500_000 and not (cache / "model.pth").exists()
    server.cut_after = None
    pull(progress=False, registry=registry)
    assert server.requests[-1] == ("model.pth", f"bytes={kept}-")
    assert (cache / "model.pth").read_bytes() == data


def test_download_restarts_when_the_server_ignores_range(server, cache):
    data = np.random.default_rng(2).bytes(50_000)
    registry = {"model.pth": _entry(server, "model.pth", data)}
    cache.mkdir()
    (cache / "model.pth.part").write_bytes(b"x" * 10_000)  # garbage that must not be kept
    server.ignore_range = True
    pull(progress=False, registry=registry)
    assert (cache / "model.pth").read_bytes() == data


def test_complete_part_file_is_installed_after_a_416(server, cache):
    data = np.random.default_rng(3).bytes(20_000)
    registry = {"model.pth": _entry(server, "model.pth", data)}
    cache.mkdir()
    (cache / "model.pth.part").write_bytes(data)
    pull(progress=False, registry=registry)
    assert (cache / "model.pth").read_bytes() == data


def test_checksum_mismatch_installs_nothing(server, cache):
    data = np.random.default_rng(4).bytes(40_000)
    registry = {"model.pth": _entry(server, "model.pth", data, sha=_sha(b"something else"))}
    with pytest.raises(VtagError, match="sha256"):
        pull(progress=False, registry=registry)
    assert not (cache / "model.pth").exists()
    assert not (cache / "model.pth.part").exists()  # a bad download is not resumed next time
    assert status(registry)[0].present is False


def test_sha256_prefix_names_are_checked(server, cache):
    data = b"torchvggish style weights" * 100
    good = {"vgg-abc.pth": _entry(server, "vgg-abc.pth", data, sha=_sha(data)[:8])}
    pull(progress=False, registry=good)
    assert status(good)[0].verified
    bad = {"vgg-def.pth": _entry(server, "vgg-def.pth", data, sha="00000000")}
    with pytest.raises(VtagError):
        pull(progress=False, registry=bad)


def test_unreachable_server_is_one_clear_error(cache):
    registry = {"model.pth": WeightFile("model.pth", "http://127.0.0.1:9/model.pth", "0" * 64, None, "x")}
    with pytest.raises(VtagError, match="vtag weights pull"):
        pull(progress=False, registry=registry)


def test_base_url_override_points_at_a_mirror(server, cache):
    data = b"mirror copy" * 1000
    registry = {"model.pth": WeightFile("model.pth", "http://127.0.0.1:9/elsewhere/model.pth", _sha(data), None, "x")}
    server.files["model.pth"] = data
    pull(progress=False, registry=registry, base_url_override=server.url + "/")
    assert (cache / "model.pth").read_bytes() == data


# ---- archives -----------------------------------------------------------------------------------


def _tgz(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def _pca_archive_entry(server, archive: bytes, mean: bytes) -> WeightFile:
    server.files["pca.tgz"] = archive
    return WeightFile("pca.tgz", f"{server.url}/pca.tgz", None, None, "test archive",
                      (Member("mean.npy", _sha(mean)), Member("eigenvecs.npy", None, (4, 4))))


def test_archive_extracts_only_the_expected_members(server, cache, tmp_path):
    mean = _npy(np.arange(4, dtype=np.float32))
    vecs = _npy(np.eye(4, dtype=np.float32))
    archive = _tgz({"./mean.npy": mean, "eigenvecs.npy": vecs, "../evil.npy": b"x", "/tmp/abs.npy": b"x",
                    "extra.txt": b"x", "a/b/mean.npy": b"x"}, symlink="yt8m/eigenvecs.npy")
    registry = {"pca.tgz": _pca_archive_entry(server, archive, mean)}
    pull(progress=False, registry=registry)
    installed = cache / "pca"
    assert sorted(p.name for p in installed.iterdir()) == ["eigenvecs.npy", "mean.npy"]
    assert (installed / "mean.npy").read_bytes() == mean
    assert not (tmp_path / "evil.npy").exists() and not (cache / "evil.npy").exists()
    assert sorted(p.name for p in cache.iterdir()) == ["pca"]  # no archive, no staging folders left
    assert weight_path("pca.tgz", registry=registry) == installed


def test_archive_with_a_bad_member_installs_nothing(server, cache):
    mean = _npy(np.arange(4, dtype=np.float32))
    wrong_shape = _npy(np.eye(3, dtype=np.float32))
    registry = {"pca.tgz": _pca_archive_entry(server, _tgz({"mean.npy": mean, "eigenvecs.npy": wrong_shape}), mean)}
    with pytest.raises(VtagError, match="eigenvecs.npy"):
        pull(progress=False, registry=registry)
    assert not (cache / "pca").exists()
    missing = {"pca.tgz": _pca_archive_entry(server, _tgz({"mean.npy": mean}), mean)}
    with pytest.raises(VtagError, match="lacks eigenvecs.npy"):
        pull(progress=False, registry=missing)


# ---- imports and errors -------------------------------------------------------------------------


def test_import_by_name_and_by_checksum(tmp_path, cache):
    data = b"local weights" * 500
    registry = {"model.pth": WeightFile("model.pth", "http://127.0.0.1:9/model.pth", _sha(data), None, "x")}
    renamed = tmp_path / "downloaded_copy.bin"
    renamed.write_bytes(data)
    assert import_files([renamed], registry=registry) == [cache / "model.pth"]
    assert renamed.exists()  # imports copy, never move the user's file
    assert status(registry)[0].verified
    corrupt = tmp_path / "model.pth"
    corrupt.write_bytes(b"corrupt")
    with pytest.raises(VtagError, match="does not match"):
        import_files([corrupt], registry=registry)
    unknown = tmp_path / "notes.txt"
    unknown.write_bytes(b"hello")
    with pytest.raises(VtagError, match="vtag weights"):
        import_files([unknown], registry=registry)
    with pytest.raises(VtagError, match="no such file"):
        import_files([tmp_path / "absent.pth"], registry=registry)


def test_import_an_archive_by_name(server, cache, tmp_path):
    mean = _npy(np.arange(4, dtype=np.float32))
    archive = tmp_path / "pca.tgz"
    archive.write_bytes(_tgz({"mean.npy": mean, "eigenvecs.npy": _npy(np.eye(4, dtype=np.float64))}))
    registry = {"pca.tgz": _pca_archive_entry(server, archive.read_bytes(), mean)}
    assert import_files([archive], registry=registry) == [cache / "pca"]
    assert archive.exists() and status(registry)[0].verified
    assert server.requests == []


def test_golden_yt8m_pca_arrays_pass_the_official_checksums(shared_data, cache):
    installed = import_files([shared_data / "golden" / "yt8m_pca_mean.npy",
                              shared_data / "golden" / "yt8m_pca_eigenvals.npy"])
    assert installed == [cache / "yt8m_pca" / "mean.npy", cache / "yt8m_pca" / "eigenvals.npy"]
    row = next(s for s in status() if s.name == "yt8m_pca.tgz")
    assert not row.present and row.detail == "missing eigenvecs.npy"
    with pytest.raises(VtagError, match="missing eigenvecs.npy"):
        weight_path("yt8m_pca.tgz")


def test_a_file_changed_after_install_fails_verification(server, cache):
    data = b"a" * 10_000
    registry = {"model.pth": _entry(server, "model.pth", data)}
    pull(progress=False, registry=registry)
    (cache / "model.pth").write_bytes(b"b" * 10_000)
    row = status(registry)[0]
    assert row.present and not row.verified
    with pytest.raises(VtagError, match="fails its check"):
        weight_path("model.pth", registry=registry)


def test_missing_file_error_names_vtag_weights(cache):
    with pytest.raises(VtagError, match="vtag weights") as info:
        weight_path("pt_inception-2015-12-05-6726825d.pth")
    assert "pt_inception-2015-12-05-6726825d.pth" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(VtagError, match="unknown weight file"):
        weight_path("nope.pth")


def test_registry_covers_the_official_files():
    names = set(weights.WEIGHT_FILES)
    assert names == {"pt_inception-2015-12-05-6726825d.pth", "yt8m_pca.tgz", "vggish_model.ckpt", "vggish-10086976.pth",
                     "vggish_pca_params-970ea276.pth", "vggish_pca_params.npz"}
    for name in ("vggish-10086976.pth", "vggish_pca_params-970ea276.pth"):
        assert weights.WEIGHT_FILES[name].sha256 == name.rsplit("-", 1)[1].split(".")[0]
    assert weights.WEIGHT_FILES["pt_inception-2015-12-05-6726825d.pth"].sha256.startswith("6726825d")


# ---- CLI ----------------------------------------------------------------------------------------


def test_cli_weights_list_and_import(shared_data, cache):
    from vtag.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["weights"], env={"VTAG_CACHE": str(cache), "COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "VTAG_CACHE" in listed.output and "pt_inception-2015-12-05-6726825d.pth" in listed.output
    imported = runner.invoke(app, ["weights", "import", str(shared_data / "golden" / "yt8m_pca_mean.npy")],
                             env={"VTAG_CACHE": str(cache), "COLUMNS": "200"})
    assert imported.exit_code == 0, imported.output
    assert (cache / "yt8m_pca" / "mean.npy").is_file()
    bad = runner.invoke(app, ["weights", "pull", "nope.pth"], env={"VTAG_CACHE": str(cache)})
    assert isinstance(bad.exception, VtagError)

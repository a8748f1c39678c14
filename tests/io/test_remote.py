"""Record files and media read from URLs through fsspec: a local HTTP server (with range requests,
as object stores answer them) and fsspec's memory filesystem give the same results as local files."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from functools import partial

import numpy as np
import pytest

pytest.importorskip("fsspec", reason="fsspec not installed: pip install 'vtag[remote]'")

from media_factory import make_media  # noqa: E402
from vtag.errors import VtagError  # noqa: E402
from vtag.io.inspect import inspect_file  # noqa: E402
from vtag.io.paths import expand_paths  # noqa: E402
from vtag.io.records import YT8MRecord, read_records, write_records  # noqa: E402


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """http.server with byte ranges (RFC 7233, one range), which fsspec uses for seekable reads."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return None
        size = os.path.getsize(path)
        start, end = 0, size - 1
        ranged = self.headers.get("Range", "").startswith("bytes=")
        if ranged:
            first, _, last = self.headers["Range"][6:].partition("-")
            start = int(first) if first else max(0, size - int(last))
            end = min(int(last), size - 1) if first and last else size - 1
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        outputfile.write(source.read(self._remaining))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(0)
    records = [YT8MRecord(f"vid{i}", np.array([i, 7]), rng.normal(size=1024).astype(np.float32),
                          rng.normal(size=128).astype(np.float32)) for i in range(5)]
    write_records(folder / "part.tfrecord", records)
    make_media(folder / "clip.mp4", duration_s=2.0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _same_records(a, b):
    a, b = list(a), list(b)
    assert [r.id for r in a] == [r.id for r in b] and len(a) == 5
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.rgb, y.rgb)
        np.testing.assert_array_equal(x.labels, y.labels)


def test_records_over_http(served):
    folder, base = served
    url = f"{base}/part.tfrecord"
    assert expand_paths([url]) == [url]
    _same_records(read_records([url]), read_records([folder / "part.tfrecord"]))
    info = inspect_file(url)
    assert info.path == url and info.records == 5
    cli = subprocess.run([sys.executable, "-m", "vtag", "info", url, "--json"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and '"records": 5' in cli.stdout, cli.stderr
    with pytest.raises(VtagError, match="no such file"):
        list(read_records([f"{base}/absent.tfrecord"]))


def test_media_over_http_gives_the_local_features(served):
    from vtag.features.extract import FeatureExtractor

    folder, base = served
    extractor = FeatureExtractor(random_weights=True, device="cpu", max_frames=300)
    remote = extractor.extract(f"{base}/clip.mp4")
    local = extractor.extract(folder / "clip.mp4")
    assert remote.id == "clip" and remote.has_audio and remote.has_video
    np.testing.assert_array_equal(remote.rgb, local.rgb)
    np.testing.assert_array_equal(remote.audio, local.audio)


def test_memory_filesystem_folder_and_media(served):
    import fsspec

    from vtag.tasks.batch import find_media
    from vtag.features.media import probe

    folder, _ = served
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/set/a.tfrecord", (folder / "part.tfrecord").read_bytes())
    fs.pipe("/bucket/set/b.tfrecord", (folder / "part.tfrecord").read_bytes())
    fs.pipe("/bucket/set/notes.txt", b"ignored")
    fs.pipe("/bucket/media/clip.mp4", (folder / "clip.mp4").read_bytes())
    fs.pipe("/bucket/media/empty.mp4", b"")
    files = expand_paths(["memory://bucket/set/"])
    assert [f.rsplit("/", 1)[1] for f in files] == ["a.tfrecord", "b.tfrecord"]
    assert len(list(read_records(files))) == 10
    media = find_media(["memory://bucket/media/"])
    assert [m.rsplit("/", 1)[1] for m in media] == ["clip.mp4", "empty.mp4"]
    assert probe(media[0]).has_video
    with pytest.raises(VtagError, match="empty file"):
        probe(media[1])


def test_without_fsspec_a_url_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(VtagError, match=r"pip install 'vtag\[remote\]'"):
        list(read_records(["s3://bucket/train.tfrecord"]))

"""`--ray` on a local Ray cluster (2 CPUs, shared by this module): the same results as one machine,
a killed driver resumes without duplicates or losses, a killed worker process costs nothing (Ray
retries its task), and `vtag extract --ray --records-per-shard` writes each video once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray not installed: pip install 'vtag[ray]'")

from media_factory import make_broken, make_media  # noqa: E402
from vtag.tasks.batch import run_batch  # noqa: E402
from vtag.tasks.distributed import TEST_CRASH_ENV, batch_on_ray, extract_on_ray  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    marker = tmp_path_factory.mktemp("crash") / "crash_me.mp4.crashed"
    # Read by the workers (they inherit the cluster's environment): the first decode of any file named
    # crash_me.mp4 SIGKILLs its own worker process.
    os.environ[TEST_CRASH_ENV] = f"crash_me.mp4={marker}"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield {"address": ray.get_runtime_context().gcs_address, "crash_marker": marker}
    finally:
        ray.shutdown()
        os.environ.pop(TEST_CRASH_ENV, None)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_ray_tags_like_one_machine_and_survives_a_killed_worker(cluster, tiny_model, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    make_media(folder / "good.mp4", duration_s=2.0)
    make_media(folder / "video_only.mp4", duration_s=1.0, audio=False)
    make_media(folder / "audio_only.m4a", duration_s=2.0, size=None)
    make_media(folder / "crash_me.mp4", duration_s=1.0)
    make_broken(folder / "text.mp4", "text")
    make_broken(folder / "zero_bytes.mp4", "empty")
    args = dict(model=tiny_model, device="cpu", random_weights=True, top_k=3)
    local = run_batch([folder], tmp_path / "local.jsonl", workers=0, **args)
    distributed = batch_on_ray([folder], tmp_path / "ray.jsonl", **args)
    assert (distributed.done, distributed.failed) == (local.done, local.failed) == (4, 2)
    assert cluster["crash_marker"].exists(), "the test hook never killed a worker: the retry went untested"
    by_path = lambda lines: {e["path"]: e for e in lines}
    ours, theirs = by_path(_lines(tmp_path / "ray.jsonl")), by_path(_lines(tmp_path / "local.jsonl"))
    assert len(ours) == len(_lines(tmp_path / "ray.jsonl")) == 6
    assert set(ours) == set(theirs)
    for path, entry in theirs.items():
        if "error" in entry:
            assert ours[path]["error"] == entry["error"]
            continue
        assert [l["id"] for l in ours[path]["labels"]] == [l["id"] for l in entry["labels"]], path
        np.testing.assert_allclose([l["score"] for l in ours[path]["labels"]],
                                   [l["score"] for l in entry["labels"]], rtol=1e-5)
        assert ours[path]["missing"] == entry["missing"]
    assert distributed.video_seconds == pytest.approx(local.video_seconds)


def test_killed_driver_resumes_without_duplicates_or_losses(cluster, tiny_model, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    names = [f"clip{i:02d}.mp4" for i in range(10)]
    for name in names:
        make_media(folder / name, duration_s=2.0)
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "vtag", "batch", str(folder), "-o", str(out), "--ray-address",
               cluster["address"], "--model", str(tiny_model), "--random-weights", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the driver finished (or failed) before it could be killed: " + driver.stderr.read().decode()
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    done_before = out.read_text().count("\n")
    assert 2 <= done_before < len(names)
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {done_before} of {len(names)}" in rerun.stderr
    lines = _lines(out)
    assert sorted(Path(e["path"]).name for e in lines) == names  # every file, each once
    assert all("error" not in e for e in lines)


def test_extract_on_ray_into_shards_with_a_manifest(cluster, tmp_path):
    from vtag.features.extract import FeatureExtractor, extract_to_records
    from vtag.io.records import dequantize_bytes, read_records

    folder = tmp_path / "videos"
    folder.mkdir()
    clips = [folder / f"v{i}.mp4" for i in range(4)]
    for clip in clips:
        make_media(clip, duration_s=1.0 + 0.5 * (clips.index(clip) % 2))
    make_broken(folder / "bad.mp4", "text")
    extractor = FeatureExtractor(random_weights=True, device="cpu")
    out = tmp_path / "feat.tfrecord"
    first = extract_on_ray(clips[:3] + [folder / "bad.mp4"], out, extractor=extractor, records_per_shard=2)
    assert [p.name for p in first.shards] == ["feat-00000.tfrecord", "feat-00001.tfrecord"]
    assert [p.name for p, _ in first.failed] == ["bad.mp4"]
    # a rerun with one more file writes only that one, into the next shard (here without Ray)
    second = extract_to_records(clips, out, extractor=extractor, records_per_shard=2)
    assert [f.id for f in second.written] == ["v3"] and [p.name for p in second.shards] == ["feat-00002.tfrecord"]
    manifest = [json.loads(line) for line in (tmp_path / "feat.manifest.jsonl").read_text().splitlines()]
    assert [m["shard"] for m in manifest] == ["feat-00000.tfrecord", "feat-00001.tfrecord", "feat-00002.tfrecord"]
    listed = [v["path"] for m in manifest for v in m["videos"]]
    assert sorted(listed) == sorted(map(str, clips))
    records = list(read_records(sorted(tmp_path.glob("feat-*.tfrecord"))))
    assert sorted(r.id for r in records) == ["v0", "v1", "v2", "v3"]
    for record in records:  # the Ray workers' features are the local extractor's
        local = extractor.extract(folder / f"{record.id}.mp4")
        np.testing.assert_array_equal(record.rgb, dequantize_bytes(local.rgb))
        np.testing.assert_array_equal(record.audio, dequantize_bytes(local.audio))

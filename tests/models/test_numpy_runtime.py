"""The NumPy runtime: the shipped models score as PyTorch scores them, `vtag classify RECORDS` prints
the same lines without importing torch, every load check still refuses what it refused, and what it
cannot run falls back to PyTorch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_helpers import model_copy
from vtag.errors import VtagError
from vtag.io.records import YT8MRecord, read_records, write_records
from vtag.models import numpy_runtime
from vtag.models.attach import attach_memory
from vtag.models.numpy_runtime import expected_arrays, load_if_supported, load_numpy_model
from vtag.models.registry import ModelConfig, create_model
from vtag.models.storage import DEFAULT_MODEL_DIRS, load_model, save_model
from vtag.models.weight_file import expected_tensors

REPO = Path(__file__).resolve().parents[2]
SAMPLES = {"2018": REPO / "examples" / "yt8m-2018-sample.tfrecord", "2017": REPO / "examples" / "yt8m-2017-sample.tfrecord"}
# vtag's own CLI entry point, reporting on stderr whether torch was imported by the time it returned
NO_TORCH_PROBE = ("import sys\nfrom vtag.cli.app import main\nsys.argv = ['vtag'] + sys.argv[1:]\ncode = 0\n"
                  "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
                  "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-c", NO_TORCH_PROBE, *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    records = list(read_records([path]))
    return np.stack([r.rgb for r in records]), np.stack([r.audio for r in records])


def records(n: int, seed: int = 0) -> list[YT8MRecord]:
    rng = np.random.default_rng(seed)
    return [YT8MRecord(f"v{seed}{i:03d}", np.array(sorted(rng.choice(40, 1 + i % 3, replace=False)), np.int64),
                       rng.uniform(-2, 2, 1024).astype(np.float32), rng.uniform(-2, 2, 128).astype(np.float32))
            for i in range(n)]


# ---- what the file must hold: worked out without torch, as the meta-device build gives it ------------

MEMORY = {"k": 5, "temperature": 0.05, "weight": 0.35, "epsilon": 0.003, "audio_weight": 0.5, "videos": 7,
          "dim": 9, "bits": 4, "labels": 11, "input_dim": 1152}


@pytest.mark.parametrize("settings", [
    {"name": "fc-residual-gated-early-fusion", "hidden": 64, "members": 3, "memory": MEMORY},
    {"name": "fc-residual-gated-early-fusion", "hidden": 64, "memory": {**MEMORY, "bits": 8}},
    {"name": "fc-residual-early-fusion", "hidden": 32, "input_spec": "mean+std"},
    {"name": "fc-early-fusion", "hidden": 32, "members": 2, "num_classes": 4716},
], ids=["gated-ensemble-int4-memory", "gated-int8-memory", "residual-mean+std", "fc-ensemble"])
def test_expected_tensors_are_the_torch_builds_in_the_same_order(settings):
    config = ModelConfig.from_dict(settings)
    assert list(expected_arrays(config, "c").items()) == list(expected_tensors(config, "c").items())


@pytest.mark.parametrize("vocabulary", ["2018", "2017"])
def test_expected_tensors_of_the_shipped_models(vocabulary):
    meta = json.loads((DEFAULT_MODEL_DIRS[vocabulary] / "config.json").read_text())
    config = ModelConfig.from_dict(meta["model"])
    assert list(expected_arrays(config, "c").items()) == list(expected_tensors(config, "c").items())


# ---- the shipped models: the same scores, the same printed lines, no torch ----------------------------

@pytest.mark.parametrize("vocabulary", ["2018", "2017"])
def test_shipped_models_score_as_torch_does(vocabulary):
    from vtag.tasks.evaluate import score_batches

    visual, audio = features(SAMPLES[vocabulary])
    mine = load_numpy_model(DEFAULT_MODEL_DIRS[vocabulary]).probabilities(visual, audio)
    net, _ = load_model(DEFAULT_MODEL_DIRS[vocabulary])
    theirs = np.concatenate([b for _, b in score_batches(net.eval(), visual, audio, 1024, "cpu", np.float64)])
    assert mine.shape == theirs.shape == (len(visual), net.config.num_classes) and mine.dtype == np.float64
    assert np.abs(mine - theirs).max() <= 1e-5
    for got, want in zip(mine, theirs):  # the top 20, in order, wherever their scores are told apart
        order = np.argsort(-want, kind="stable")[:20]
        apart = np.abs(np.diff(want[order])) > 1e-5
        mine_order = np.argsort(-got, kind="stable")[:20]
        for i in np.flatnonzero(apart):
            assert set(mine_order[:i + 1]) == set(order[:i + 1])


def test_classify_records_imports_no_torch_and_prints_what_torch_prints():
    both = [str(SAMPLES["2018"]), str(SAMPLES["2017"])]  # the second is scored by the 2017 head
    auto = run_cli("classify", *both, "-q")
    forced = run_cli("classify", *both, "-q", "--runtime", "torch")
    assert auto.returncode == forced.returncode == 0, (auto.stderr, forced.stderr)
    assert "torch imported: False" in auto.stderr, auto.stderr
    assert "torch imported: True" in forced.stderr
    # the same videos, labels and order; a printed score may differ by one in its last digit, where a
    # score within 1e-5 of torch's sits on a rounding boundary (0.6015 -> 0.601 or 0.602)
    mine, theirs = (printed_lines(run.stdout) for run in (auto, forced))
    assert [(video, [label for label, _ in tags]) for video, tags in mine] == \
        [(video, [label for label, _ in tags]) for video, tags in theirs]
    for (_, got), (_, want) in zip(mine, theirs):
        assert all(abs(a - b) <= 0.0010001 for (_, a), (_, b) in zip(got, want))
    assert len(mine) == sum(1 for p in both for _ in read_records([p]))


def printed_lines(stdout: str) -> list[tuple[str, list[tuple[str, float]]]]:
    """`vtag classify` lines ("id  Label 0.216, Other label 0.209, ...") as (id, [(label, score)])."""
    lines = []
    for line in stdout.splitlines():
        video, tags = line.split("  ", 1)
        found = re.findall(r"(.+?) (\d+\.\d{3})(?:, |$)", tags)
        assert ", ".join(f"{label} {score}" for label, score in found) == tags, line
        lines.append((video, [(label, float(score)) for label, score in found]))
    return lines


def test_json_output_has_the_same_labels_and_scores_within_1e_5(tmp_path):
    """JSON keeps every digit of a score, so float32 rounding shows there (~1e-7); the labels do not move."""
    out = {runtime: tmp_path / f"{runtime}.jsonl" for runtime in ("auto", "torch")}
    for runtime, path in out.items():
        result = run_cli("classify", str(SAMPLES["2018"]), "-o", str(path), "--runtime", runtime, "-q")
        assert result.returncode == 0, result.stderr
    mine, theirs = ([json.loads(line) for line in out[r].read_text().splitlines()] for r in ("auto", "torch"))
    assert len(mine) == len(theirs) == 293
    for got, want in zip(mine, theirs):
        assert got["source"] == want["source"] and [x["id"] for x in got["labels"]] == [x["id"] for x in want["labels"]]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(got["labels"], want["labels"])) <= 1e-5


# ---- the checks of the PyTorch path hold here --------------------------------------------------------

@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A small int4 gated ensemble with an int4 memory: the shipped model's kind."""
    torch.manual_seed(0)
    net = create_model("fc-residual-gated-early-fusion", num_classes=40, hidden=64, members=2).eval()
    train = records(30, seed=3)
    hybrid = attach_memory(net, np.stack([r.rgb for r in train]), np.stack([r.audio for r in train]),
                           [r.labels for r in train], dim=16, bits=4, k=5)
    return save_model(hybrid, tmp_path_factory.mktemp("small"), extra={"vocabulary": "labels.csv"}, dtype="int4")


@pytest.mark.parametrize("name, bits, dim, dtype, members", [
    ("fc-residual-gated-early-fusion", 4, 16, "int4", 2),
    ("fc-residual-early-fusion", 4, 9, "int8", 1),  # an odd key width: the last nibble is padding
    ("fc-early-fusion", 8, 7, "float16", 1),
    ("fc-early-fusion", None, None, "float32", 3),
])
def test_every_model_kind_it_runs_scores_as_torch_does(tmp_path, name, bits, dim, dtype, members):
    torch.manual_seed(1)
    net = create_model(name, num_classes=40, hidden=64, members=members).eval()
    if bits is not None:
        train = records(30, seed=3)
        net = attach_memory(net, np.stack([r.rgb for r in train]), np.stack([r.audio for r in train]),
                            [r.labels for r in train], dim=dim, bits=bits, k=4)
    folder = save_model(net, tmp_path / "m", extra={"vocabulary": "labels.csv"}, dtype=dtype)
    test = records(9, 5)
    visual, audio = np.stack([r.rgb for r in test]), np.stack([r.audio for r in test])
    loaded, _ = load_model(folder)
    with torch.inference_mode():
        theirs = torch.sigmoid(loaded.eval()(torch.from_numpy(visual), torch.from_numpy(audio)).double()).numpy()
    assert np.abs(load_numpy_model(folder).probabilities(visual, audio) - theirs).max() <= 1e-6


def _set(key, value, index=None):
    def change(state):
        state[key] = state[key].clone()
        if index is None:
            state[key].fill_(value)
        else:
            state[key].view(-1)[index] = value
    return change


def _pop(key):
    return lambda state: state.pop(key)


def _add(state):
    state["members.0.extra"] = torch.zeros(3)


def _retype(key, dtype):
    def change(state):
        state[key] = state[key].to(dtype)
    return change


@pytest.mark.parametrize("change, meta_change", [
    (_set("members.1.classifier.bias", float("nan"), 3), None),
    (_set("memory.key_scale", float("inf"), 0), None),
    (_pop("members.0.body.1.gate.weight.int4_scale"), None),
    (_pop("memory.keys"), None),
    (_add, None),
    (_retype("memory.label_values", torch.int32), None),
    (_set("memory.label_values", 40, 2), None),
    (_set("memory.label_values", -1, 0), None),
    (_set("memory.label_offsets", 999, 4), None),
    (None, lambda meta: meta["model"].update(hidden=10 ** 6)),
    (None, lambda meta: meta["model"].update(hidden=32)),
    (None, lambda meta: meta["model"].update(hidden=-1)),
    (None, lambda meta: meta["model"]["memory"].update(bits=3)),
], ids=["nan-bias", "inf-key-scale", "no-int4-scale", "no-keys", "extra-tensor", "int32-labels", "label-past-classes",
        "negative-label", "offsets", "huge-hidden", "other-hidden", "bad-hidden", "bad-bits"])
def test_a_damaged_model_is_refused_with_the_torch_paths_line(tmp_path, small_model, change, meta_change):
    folder = model_copy(small_model, tmp_path, change, meta_change)
    with pytest.raises(VtagError) as torch_error:
        load_model(folder)
    with pytest.raises(VtagError) as numpy_error:
        load_numpy_model(folder)
    assert str(numpy_error.value) == str(torch_error.value) and "\n" not in str(numpy_error.value)


def test_a_changed_trunk_is_refused_as_torch_refuses_it(tmp_path):
    import shutil

    shutil.copytree(DEFAULT_MODEL_DIRS["2017"], tmp_path / "default-2017")
    (tmp_path / "default").mkdir()
    (tmp_path / "default" / "config.json").write_bytes((DEFAULT_MODEL_DIRS["2018"] / "config.json").read_bytes())
    trunk = bytearray((DEFAULT_MODEL_DIRS["2018"] / "model.safetensors").read_bytes())
    trunk[-1] ^= 1
    (tmp_path / "default" / "model.safetensors").write_bytes(bytes(trunk))
    with pytest.raises(VtagError, match="has changed since the head was fitted") as numpy_error:
        load_numpy_model(tmp_path / "default-2017")
    with pytest.raises(VtagError) as torch_error:
        load_model(tmp_path / "default-2017")
    assert str(numpy_error.value) == str(torch_error.value)


def test_cli_refuses_a_nan_record_and_skips_it_with_skip_bad_without_torch(tmp_path, small_model):
    from vtag.io.tfrecord import write_tfrecord
    from vtag.io.tfrecord import encode_example

    labels = tmp_path / "labels.csv"
    labels.write_text("Index,Name\n" + "".join(f"{i},class {i}\n" for i in range(40)))
    folder = model_copy(small_model, tmp_path, meta_change=lambda meta: meta.update(vocabulary=str(labels)))
    good = records(3, seed=1)
    bad = good[1].rgb.copy()
    bad[5] = np.nan

    def example(r, rgb):
        return encode_example({"id": [r.id.encode()], "labels": r.labels, "mean_rgb": rgb, "mean_audio": r.audio})

    shard = tmp_path / "r.tfrecord"
    write_tfrecord(shard, [example(good[0], good[0].rgb), example(good[1], bad), example(good[2], good[2].rgb)])
    refused = run_cli("classify", str(shard), "--model", str(folder))
    assert refused.returncode == 2 and "torch imported: False" in refused.stderr, refused.stderr
    error = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and str(shard) in error[0] and "--skip-bad" in error[0], refused.stderr
    skipped = run_cli("classify", str(shard), "--model", str(folder), "--skip-bad", "-q")
    assert skipped.returncode == 0 and "torch imported: False" in skipped.stderr, skipped.stderr
    assert [line.split()[0] for line in skipped.stdout.splitlines()] == [good[0].id, good[2].id]


# ---- what this runtime does not run goes to PyTorch --------------------------------------------------

def test_models_it_cannot_run_fall_back_to_torch(tmp_path, small_model):
    from vtag.tasks.classify import Tagger

    attention = save_model(create_model("attend-fusion", num_classes=3862, hidden=32, attention_dim=16, num_heads=2),
                           tmp_path / "attention", extra={"vocabulary": "2018"})
    mixture = save_model(create_model("fc-early-fusion", num_classes=3862, hidden=32, experts=2),
                         tmp_path / "experts", extra={"vocabulary": "2018"})
    half = save_model(create_model("fc-early-fusion", num_classes=3862, hidden=32), tmp_path / "bf16",
                      extra={"vocabulary": "2018"}, dtype="bfloat16")
    for folder in (attention, mixture, half):
        assert load_if_supported(str(folder), "cpu", "auto", "2018") is None
        assert isinstance(Tagger(str(folder), device="cpu", runtime="auto").model, torch.nn.Module)
        with pytest.raises(VtagError, match="--runtime numpy cannot run it .*: use --runtime torch"):
            load_if_supported(str(folder), "cpu", "numpy", "2018")
    assert isinstance(Tagger(None, device="cpu", runtime="auto").model, numpy_runtime.NumpyModel)
    assert isinstance(Tagger(None, device="cpu", runtime="torch").model, torch.nn.Module)
    with pytest.raises(VtagError, match="--runtime tflite: use auto, torch, numpy or onnx"):
        Tagger(None, device="cpu", runtime="tflite")


def test_a_gpu_is_left_to_torch(monkeypatch):
    from vtag.devices import surely_cpu

    assert load_if_supported(None, "cuda", "auto", "2018") is None
    with pytest.raises(VtagError, match="--runtime numpy runs on the CPU, not --device cuda"):
        load_if_supported(None, "cuda", "numpy", "2018")
    assert surely_cpu("cpu") and not surely_cpu("cuda:0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert surely_cpu("auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(sys, "platform", "win32")
    assert not surely_cpu("auto")  # nothing to tell by without torch there


def test_media_files_and_torch_runtime_keep_the_torch_path(tmp_path):
    """`--runtime torch` is honoured for record files; `vtag classify` of a bare record file in the
    default runtime is the one that goes without torch."""
    shard = tmp_path / "r.tfrecord"
    write_records(shard, records(2, seed=4))
    # labels below 40 of the 2018 vocabulary: the shipped 2018 model
    forced = run_cli("classify", str(shard), "--runtime", "torch", "-q")
    auto = run_cli("classify", str(shard), "-q")
    assert "torch imported: True" in forced.stderr and "torch imported: False" in auto.stderr
    assert forced.stdout == auto.stdout and len(auto.stdout.splitlines()) == 2


@pytest.mark.parametrize("load, preset, want", [(99.0, None, "1"), (0.0, None, None), (99.0, "4", "4")])
def test_one_blas_thread_only_where_the_cpus_are_busy_and_the_user_set_none(load, preset, want):
    probe = (f"import os\nos.getloadavg = lambda: ({load}, 0.0, 0.0)\nfrom vtag.devices import fewer_blas_threads_when_busy\n"
             "fewer_blas_threads_when_busy()\nprint(os.environ.get('OPENBLAS_NUM_THREADS'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                            env={**env, "PYTHONPATH": str(REPO)}, timeout=60)
    assert result.stdout.strip() == str(want), result.stderr

"""Training on tiny synthetic records: a run, checkpoints, exact resume, interruption, DDP, bad options."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vtag.errors import VtagError
from vtag.io.records import YT8MRecord, write_records
from vtag.tasks.train import TrainConfig, train

TINY = {"hidden": 16}
MODEL = "attend-fusion-no-attention"


def write_tiny(path: Path, videos: int, seed: int) -> Path:
    """Videos whose labels follow their features (class = argmax of the first 8 rgb dims), so a model
    can learn them; 2018 schema, so the vocabulary is detected as 2018."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(videos):
        rgb = rng.normal(size=1024).astype(np.float32)
        audio = rng.normal(size=128).astype(np.float32)
        labels = np.array(sorted({int(np.argmax(rgb[:8])), 8 + int(np.argmax(audio[:4]))}), np.int64)
        records.append(YT8MRecord(f"v{seed}{i:03d}", labels, rgb, audio))
    write_records(path, records)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    # tiny matrices: a second intra-op thread only adds synchronisation (badly so on a busy machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return write_tiny(folder / "train.tfrecord", 96, 1), write_tiny(folder / "valid.tfrecord", 32, 2)


def config(tiny_data, out: Path, **kwargs) -> TrainConfig:
    train_file, valid_file = tiny_data
    settings = dict(train=[str(train_file)], valid=[str(valid_file)], model=MODEL, epochs=2, lr=1e-2,
                    batch_size=16, out=str(out), device="cpu", model_overrides=dict(TINY))
    settings.update(kwargs)
    return TrainConfig(**settings)


def quiet(_line: str) -> None:
    pass


def test_train_writes_best_and_last_and_learns(tiny_data, tmp_path):
    from vtag.models.storage import load_model

    result = train(config(tiny_data, tmp_path / "run", epochs=4), log=quiet)
    assert result.epochs_done == 4 and len(result.history) == 4
    gaps = [h["valid"]["gap"] for h in result.history]
    assert gaps[-1] > gaps[0]  # it learns the feature -> label rule
    for name in ("best", "last"):
        model, meta = load_model(tmp_path / "run" / name)
        assert meta["vocabulary"] == "2018" and meta["model"]["hidden"] == 16
        assert meta["metrics"]["gap"] > 0
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert best["metrics"]["gap"] == pytest.approx(max(gaps))
    # finished: last/ is a model folder like best/, the resume state is gone
    assert sorted(p.name for p in (tmp_path / "run" / "last").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "run" / "last" / "config.json").read_text())["epochs_done"] == 4


def test_keep_optimizer_keeps_the_resume_state_of_a_finished_run(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path / "run", epochs=2, keep_optimizer=True), log=quiet)
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert state["epoch"] == 2 and state["global_step"] == 2 * 6
    assert (tmp_path / "run" / "last" / "optimizer.safetensors").is_file()
    result = train(config(tiny_data, tmp_path / "run", epochs=3, resume=True), log=quiet)  # extended
    assert result.epochs_done == 3 and not (tmp_path / "run" / "last" / "optimizer.safetensors").exists()


def test_a_kill_while_the_finished_run_drops_its_state_resumes_to_a_plain_model(tiny_data, tmp_path):
    """Killed between the two renames of that last swap: only last.old holds the run; --resume ends it."""
    train(config(tiny_data, tmp_path / "run", epochs=2, keep_optimizer=True), log=quiet)
    (tmp_path / "run" / "last").rename(tmp_path / "run" / "last.old")
    result = train(config(tiny_data, tmp_path / "run", epochs=2, resume=True), log=quiet)
    assert result.epochs_done == 2 and not (tmp_path / "run" / "last.old").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "last").iterdir()) == ["config.json", "model.safetensors"]


def test_a_finished_run_without_its_optimizer_state_is_refused_in_one_line(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path / "run", epochs=1), log=quiet)
    with pytest.raises(VtagError, match="--keep-optimizer") as info:
        train(config(tiny_data, tmp_path / "run", epochs=2, resume=True), log=quiet)
    assert "finished" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(VtagError, match="already holds a finished run"):
        train(config(tiny_data, tmp_path / "run", epochs=2), log=quiet)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "optimizer.safetensors")


def assert_same_training_state(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    ma, mb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "input_dropout": 0.2}, {"mixup": 0.4}])
def test_resume_after_one_epoch_is_exact(tiny_data, tmp_path, extra):
    # the optimizer state kept at the end, to compare it and to extend the 1-epoch run
    train(config(tiny_data, tmp_path / "straight", keep_optimizer=True, **extra), log=quiet)
    train(config(tiny_data, tmp_path / "split", epochs=1, keep_optimizer=True, **extra), log=quiet)
    # --resume takes the frozen settings (lr, ema, ...) from the checkpoint; a cosine schedule is not
    # covered here because its length depends on --epochs (see the interrupt test instead)
    train(config(tiny_data, tmp_path / "split", epochs=2, resume=True, keep_optimizer=True), log=quiet)
    assert_same_training_state(tmp_path / "straight" / "last", tmp_path / "split" / "last")


def test_interrupt_mid_epoch_leaves_a_resumable_checkpoint(tiny_data, tmp_path):
    cosine = {"schedule": "cosine", "ema": 0.9, "keep_optimizer": True}
    train(config(tiny_data, tmp_path / "straight", **cosine), log=quiet)

    def stop(info):
        if info["step"] == 8:  # inside epoch 2 (6 steps an epoch)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_data, tmp_path / "cut", **cosine), on_step=stop, log=quiet)
    state = json.loads((tmp_path / "cut" / "last" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    train(config(tiny_data, tmp_path / "cut", resume=True, keep_optimizer=True), log=quiet)
    assert_same_training_state(tmp_path / "straight" / "last", tmp_path / "cut" / "last")


def test_default_run_interrupted_resumes_and_ends_as_a_plain_model(tiny_data, tmp_path):
    """Default settings: the interrupted run keeps what resuming needs, the finished one drops it,
    and the resumed weights equal an uninterrupted run's."""
    train(config(tiny_data, tmp_path / "straight"), log=quiet)

    def stop(info):
        if info["step"] == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(tiny_data, tmp_path / "cut"), on_step=stop, log=quiet)
    assert (tmp_path / "cut" / "last" / "optimizer.safetensors").is_file()
    train(config(tiny_data, tmp_path / "cut", resume=True), log=quiet)
    for run in ("straight", "cut"):
        assert sorted(p.name for p in (tmp_path / run / "last").iterdir()) == ["config.json", "model.safetensors"]
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_streaming_path_trains(tiny_data, tmp_path):
    result = train(config(tiny_data, tmp_path / "stream", epochs=1, stream=True), log=quiet)
    assert result.epochs_done == 1 and result.history[0]["valid"]["videos"] == 32


@pytest.mark.parametrize("change, message", [
    ({"epochs": 0}, "--epochs must be >= 1"),
    ({"lr": -1.0}, "--lr must be a positive"),
    ({"dropout": 1.5}, "--dropout must be in"),
    ({"input_dropout": 1.0}, "--input-dropout must be in"),
    ({"mixup": -0.1}, "--mixup must be >= 0"),
    ({"schedule": "linear"}, "--schedule must be"),
    ({"model": "attend-fusoin"}, "did you mean attend-fusion"),
    ({"train": ["/nonexistent/*.tfrecord"]}, "nonexistent"),
    ({"resume": True}, "no checkpoint to resume"),
    ({"input_spec": "mean+std"}, "mean"),
    ({"size": "huge"}, "--size must be compact or paper"),
])
def test_bad_options_fail_with_one_line(tiny_data, tmp_path, change, message):
    with pytest.raises(VtagError, match=message) as info:
        train(config(tiny_data, tmp_path / "bad", **change), log=quiet)
    assert "\n" not in str(info.value)


def test_size_sets_the_widths_and_explicit_ones_win(tiny_data, tmp_path):
    from vtag.models.registry import paper_config

    base = dict(train=["x.tfrecord"], model="attend-fusion")
    assert TrainConfig(**base).model_settings() == {"hidden": 1024, "attention_dim": 512}
    assert TrainConfig(**base, size="paper").model_settings() == {}  # the registry's paper widths
    assert paper_config("attend-fusion").hidden == 2048
    assert TrainConfig(**base, model_overrides={"hidden": 64}).model_settings() == {"hidden": 64, "attention_dim": 512}
    fc = dict(train=["x.tfrecord"], model="fc-residual-gated-early-fusion")
    assert TrainConfig(**fc).model_settings() == {"hidden": 1024}  # no attention layers to size
    assert paper_config(fc["model"]).hidden == 8000 and TrainConfig(**fc, size="paper").model_settings() == {}


def test_unreadable_records_fail_with_the_file_name(tiny_data, tmp_path):
    broken = tmp_path / "broken.tfrecord"
    broken.write_bytes(tiny_data[0].read_bytes()[:5000])  # cut inside the second record
    with pytest.raises(VtagError, match="broken.tfrecord") as info:
        train(config(tiny_data, tmp_path / "bad", train=[str(broken)]), log=quiet)
    assert "\n" not in str(info.value)


def test_mix_batch_blends_inputs_and_labels_by_one_weight():
    from vtag.tasks.training_data import mix_batch

    gen = torch.Generator().manual_seed(0)
    visual, audio = torch.randn(8, 1024, generator=gen), torch.randn(8, 128, generator=gen)
    target = (torch.rand(8, 20, generator=gen) < 0.2).float()
    mixed = mix_batch(visual, audio, target, 0.4, seed=3, step=7)
    again = mix_batch(visual, audio, target, 0.4, seed=3, step=7)
    assert all(torch.equal(a, b) for a, b in zip(mixed, again))  # resume replays the same mix
    other = mix_batch(visual, audio, target, 0.4, seed=3, step=8)
    assert not torch.equal(mixed[0], other[0])
    # recover the weight and partner from the labels: each mixed row is w*x_i + (1-w)*x_j
    mixed_visual, mixed_audio, mixed_target = mixed
    for i in range(8):
        for j in range(8):
            denom = visual[i] - visual[j]
            if i == j or not torch.any(denom):
                continue
            weight = float(((mixed_visual[i] - visual[j]) @ denom) / (denom @ denom))
            if torch.allclose(mixed_visual[i], weight * visual[i] + (1 - weight) * visual[j], atol=1e-5):
                assert 0 <= weight <= 1
                assert torch.allclose(mixed_audio[i], weight * audio[i] + (1 - weight) * audio[j], atol=1e-5)
                assert torch.allclose(mixed_target[i], weight * target[i] + (1 - weight) * target[j], atol=1e-5)
                break
        else:  # paired with itself: unchanged
            assert torch.allclose(mixed_visual[i], visual[i], atol=1e-5)


@pytest.mark.parametrize("model", [MODEL, "attend-fusion"])
def test_bf16_autocast_path_trains_and_saves_float32(tiny_data, tmp_path, monkeypatch, model):
    """The bf16 autocast that training uses on CUDA, run here through CPU autocast (CI has no GPU):
    the loss, validation and checkpoints must cope with bf16 activations."""
    import vtag.tasks.train as train_module
    from vtag.models.storage import load_model

    monkeypatch.setattr(train_module, "_autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))
    overrides = {"hidden": 16, "attention_dim": 8, "num_heads": 2} if model == "attend-fusion" else dict(TINY)
    result = train(config(tiny_data, tmp_path / "bf16", model=model, model_overrides=overrides), log=quiet)
    assert all(np.isfinite(r["loss"]) for r in result.history)
    assert 0 < result.history[-1]["valid"]["gap"] <= 1
    weights = load_file(tmp_path / "bf16" / "last" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    net, _ = load_model(tmp_path / "bf16" / "best")
    assert net.config.name == model


def test_existing_run_needs_resume(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path / "run", epochs=1, keep_optimizer=True), log=quiet)
    with pytest.raises(VtagError, match="already holds a run"):
        train(config(tiny_data, tmp_path / "run", epochs=1), log=quiet)


def test_cli_train_and_bad_option(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from vtag.cli import app

    train_file, valid_file = tiny_data
    runner = CliRunner()
    args = ["train", "--train", str(train_file), "--valid", str(valid_file), "--model", MODEL, "--hidden", "16",
            "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--out", str(tmp_path / "cli")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "valid GAP" in result.output and (tmp_path / "cli" / "best" / "model.safetensors").is_file()
    result = runner.invoke(app, args[:-2] + ["--out", str(tmp_path / "cli2"), "--lr", "0"])
    assert isinstance(result.exception, VtagError) and "--lr" in str(result.exception)


def test_cli_train_model_options_reach_the_saved_config(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from vtag.cli import app
    from vtag.models.storage import load_model

    train_file, valid_file = tiny_data
    out = tmp_path / "moe"
    args = ["train", "--train", str(train_file), "--valid", str(valid_file), "--model", "fc-early-fusion",
            "--hidden", "16", "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--out", str(out),
            "--input-norm", "--experts", "2", "--mixup", "0.4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    model, _ = load_model(out / "last")
    assert model.config.input_norm is True and model.config.experts == 2
    settings = json.loads((out / "last" / "config.json").read_text())["train"]["settings"]
    assert settings["mixup"] == 0.4
    result = CliRunner().invoke(app, args[:-5] + ["--out", str(tmp_path / "bad"), "--experts", "2"]
                                + ["--model", "attend-fusion"])
    assert isinstance(result.exception, VtagError) and "experts applies only" in str(result.exception)


def test_ddp_two_gloo_processes(tiny_data, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip(f"torchrun not found beside {sys.executable}")
    train_file, valid_file = tiny_data
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
         "-m", "vtag", "train", "--train", str(train_file), "--valid", str(valid_file), "--model", MODEL,
         "--hidden", "16", "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--out", str(out),
         "--keep-optimizer"],
        capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    state = json.loads((out / "last" / "state.json").read_text())
    # 96 videos over 2 processes: 48 each, 6 steps of 8 per epoch
    assert state["epoch"] == 2 and state["global_step"] == 12
    assert proc.stdout.count("epoch 2/2") == 1  # only rank 0 reports
    shutil.rmtree(out)


def test_prior_bias_init_sets_only_the_classifiers():
    from vtag.models.registry import create_model
    from vtag.tasks.train import init_classifier_bias

    labels = [np.array([0, 1]), np.array([0]), np.array([0, 2]), np.array([], np.int64)]
    model = create_model("fc-residual-gated-late-fusion", num_classes=5, hidden=8)
    gate_bias = model.fusion_gate.bias.detach().clone()
    init_classifier_bias(model, labels, 5)
    expected = torch.tensor([(3 + 1) / 6, 2 / 6, 2 / 6, 1 / 6, 1 / 6])
    for layer in (model.visual_classifier, model.audio_classifier):
        assert torch.allclose(torch.sigmoid(layer.bias), expected)
    assert torch.equal(model.fusion_gate.bias, gate_bias)
    model = create_model("fc-attention", num_classes=5, hidden=8, attention_dim=8, num_heads=2)
    init_classifier_bias(model, labels, 5)
    assert torch.allclose(torch.sigmoid(model.classifier[-1].bias), expected)


def test_ensemble_no_attention_averages_logits():
    from vtag.models.registry import create_model
    from vtag.models.ensemble import ensemble_no_attention

    torch.manual_seed(0)
    models = [create_model(MODEL, num_classes=7, hidden=h).eval() for h in (4, 6)]
    merged = ensemble_no_attention(models).eval()
    assert merged.config.hidden == 10
    visual, audio = torch.randn(4, 1024), torch.randn(4, 128)
    with torch.no_grad():
        expected = (models[0](visual, audio) + models[1](visual, audio)) / 2
        assert torch.allclose(merged(visual, audio), expected, atol=1e-5)
    with pytest.raises(VtagError, match="only attend-fusion-no-attention"):
        ensemble_no_attention([create_model("fc-audio", hidden=4)])


def test_sigint_to_the_cli_saves_and_exits_130(tiny_data, tmp_path):
    import signal
    import time

    train_file, valid_file = tiny_data
    out = tmp_path / "sigint"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtag", "train", "--train", str(train_file), "--valid", str(valid_file),
         "--model", MODEL, "--hidden", "16", "--epochs", "1000", "--batch-size", "16", "--device", "cpu",
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (out / "last" / "state.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout[-1000:] + stderr[-1000:]
    assert "continue with --resume" in stdout
    state = json.loads((out / "last" / "state.json").read_text())
    assert state["global_step"] >= 6  # at least the first epoch's checkpoint


def test_a_diverged_loss_stops_in_one_line_and_the_checkpoint_stays_json(tiny_data, tmp_path, monkeypatch):
    """A NaN loss stops the run with one line naming the step and --lr; what was saved before is
    strict JSON (no NaN, which only Python reads back)."""
    import vtag.tasks.train as train_module

    real = train_module.nn.BCEWithLogitsLoss

    class NaNAfterOneEpoch(real):
        calls = 0

        def forward(self, logits, target):
            NaNAfterOneEpoch.calls += 1
            loss = super().forward(logits, target)
            return loss * float("nan") if NaNAfterOneEpoch.calls > 6 else loss  # 6 steps an epoch

    monkeypatch.setattr(train_module.nn, "BCEWithLogitsLoss", NaNAfterOneEpoch)
    with pytest.raises(VtagError, match=r"diverged at epoch 2, step 7: the loss is nan; .*--lr \(this one: 0.01\)") as info:
        train(config(tiny_data, tmp_path / "nan", epochs=3), log=quiet)
    assert "\n" not in str(info.value)
    for name in ("state.json", "config.json"):
        text = (tmp_path / "nan" / "last" / name).read_text()
        json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} in {name}"))
    assert json.loads((tmp_path / "nan" / "last" / "state.json").read_text())["epoch"] == 1

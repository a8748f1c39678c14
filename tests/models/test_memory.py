"""Neighbour memory: votes against a brute-force reference, blending, save/load, int8 weights, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vtag.errors import VtagError
from vtag.models.attach import attach_memory
from vtag.models.registry import create_model
from vtag.models.storage import load_model, save_model
from vtag.io.records import YT8MRecord, write_records

CLASSES = 12


def videos(count: int, seed: int):
    rng = np.random.default_rng(seed)
    visual = rng.normal(size=(count, 1024)).astype(np.float32)
    audio = rng.normal(size=(count, 128)).astype(np.float32)
    labels = [np.unique(rng.integers(0, CLASSES, size=rng.integers(1, 4))) for _ in range(count)]
    return visual, audio, labels


@pytest.fixture
def base():
    torch.manual_seed(0)
    return create_model("fc-residual-gated-early-fusion", num_classes=CLASSES, hidden=16).eval()


def reference_votes(visual, audio, train_visual, train_audio, labels, k, temperature, audio_weight, dim):
    """The memory's definition in float64 without int8 rounding: cosine kNN in the space of the top
    `dim` principal directions of the centred stored keys."""
    def keys(v, a):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        return np.concatenate([v, audio_weight * a], 1).astype(np.float64)

    stored, query = keys(train_visual, train_audio), keys(visual, audio)
    mean = stored.mean(0)
    _, _, directions = np.linalg.svd(stored - mean, full_matrices=False)
    stored, query = (stored - mean) @ directions[:dim].T, (query - mean) @ directions[:dim].T
    similarity = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        stored / np.linalg.norm(stored, axis=1, keepdims=True)).T
    votes = np.zeros((len(visual), CLASSES))
    for row, sims in enumerate(similarity):
        top = np.argsort(-sims)[:k]
        weights = np.exp((sims[top] - sims[top].max()) / temperature)
        weights /= weights.sum()
        for index, w in zip(top, weights):
            votes[row, labels[index]] += w
    return votes


def test_votes_match_brute_force_knn(base):
    train_visual, train_audio, labels = videos(200, 1)
    visual, audio, _ = videos(6, 2)
    hybrid = attach_memory(base, train_visual, train_audio, labels, dim=24, bits=8, k=5, temperature=0.1)
    got = hybrid.memory.neighbour_scores(torch.from_numpy(visual), torch.from_numpy(audio)).numpy()
    want = reference_votes(visual, audio, train_visual, train_audio, labels, 5, 0.1, 0.5, 24)
    # int8 keys move similarities by ~1e-3, which moves the softmax weights a little
    np.testing.assert_allclose(got, want, atol=0.02)
    # k weights summing to 1, each given to every label of its neighbour (every video has >= 1 label)
    assert np.all(got.sum(1) >= 1 - 1e-9)


@pytest.mark.parametrize("bits, dim", [(8, 24), (4, 24), (4, 23)])
def test_keys_unpack_to_the_quantised_projection(base, bits, dim):
    train_visual, train_audio, labels = videos(300, 13)
    hybrid = attach_memory(base, train_visual, train_audio, labels, dim=dim, bits=bits)
    memory = hybrid.memory
    assert memory.keys.shape == (300, dim if bits == 8 else (dim + 1) // 2)
    joint = torch.cat([torch.nn.functional.normalize(torch.from_numpy(train_visual), dim=-1),
                       0.5 * torch.nn.functional.normalize(torch.from_numpy(train_audio), dim=-1)], dim=-1)
    levels = 2 ** (bits - 1) - 1
    want = torch.round(((joint - memory.mean) @ memory.projection) / memory.key_scale).clamp(-levels, levels)
    got = memory.quantised_keys().float()
    assert got.shape == (300, dim) and got.abs().max() <= levels
    assert (got != want).float().mean() < 0.001 and (got - want).abs().max() <= 1  # rounding ties only
    if bits == 4:  # a scale from the 99.9th percentile: a few values clip, most do not
        assert 0 < (want.abs() == levels).float().mean() < 0.05


@pytest.mark.parametrize("bits", [8, 4])
def test_a_stored_video_finds_its_own_labels(base, bits):
    train_visual, train_audio, labels = videos(50, 3)
    hybrid = attach_memory(base, train_visual, train_audio, labels, bits=bits, k=3, temperature=0.01)
    votes = hybrid.memory.neighbour_scores(torch.from_numpy(train_visual[:10]), torch.from_numpy(train_audio[:10]))
    for row, own in zip(votes.numpy(), labels[:10]):
        assert set(np.flatnonzero(row > 0.9)) == set(own.tolist())


def test_leave_one_out_lookup_never_finds_the_video_itself(base):
    train_visual, train_audio, labels = videos(40, 14)
    memory = attach_memory(base, train_visual, train_audio, labels, k=5).memory
    rows = torch.arange(40)
    index, weights = memory.neighbours(torch.from_numpy(train_visual), torch.from_numpy(train_audio))
    assert torch.equal(index[:, 0], rows)  # without exclusion each video is its own nearest
    index, weights = memory.neighbours(torch.from_numpy(train_visual), torch.from_numpy(train_audio), exclude=rows)
    assert index.shape == (40, 5) and not torch.any(index == rows[:, None])
    torch.testing.assert_close(weights.sum(1), torch.ones(40, dtype=torch.float64))


def test_blend_is_the_stated_mixture_and_training_skips_it(base):
    train_visual, train_audio, labels = videos(30, 4)
    visual, audio, _ = videos(5, 5)
    visual, audio = torch.from_numpy(visual), torch.from_numpy(audio)
    hybrid = attach_memory(base, train_visual, train_audio, labels, weight=0.3, epsilon=0.01)
    with torch.no_grad():
        plain = base(visual, audio).double()
        mixed = hybrid(visual, audio)
        votes = hybrid.memory.neighbour_scores(visual, audio).numpy()
        smoothed = (votes + 0.01) / 1.02
        torch.testing.assert_close(mixed, 0.7 * plain + 0.3 * torch.from_numpy(np.log(smoothed / (1 - smoothed))))
        # a class every neighbour has outranks, at equal network logits, one no neighbour has
        assert votes.max() > 0.5
        hybrid.train()
        base.train()
        torch.manual_seed(1)
        training = hybrid(visual, audio)
        torch.manual_seed(1)
        assert torch.equal(training, base(visual, audio))  # memory unused while training (same dropout draws)


def test_without_memory_gives_back_the_network(base):
    from vtag.models.attach import without_memory

    train_visual, train_audio, labels = videos(30, 10)
    visual, audio, _ = videos(4, 11)
    visual, audio = torch.from_numpy(visual), torch.from_numpy(audio)
    plain = without_memory(attach_memory(base, train_visual, train_audio, labels))
    assert plain.config.memory is None and not plain.training
    with torch.no_grad():
        assert torch.equal(plain(visual, audio), base(visual, audio))


def test_load_with_and_without_memory(base, tmp_path):
    from vtag.models.attach import load_with_and_without_memory

    save_model(base, tmp_path / "plain")
    with pytest.raises(VtagError, match="no neighbour memory"):
        load_with_and_without_memory(tmp_path / "plain")
    train_visual, train_audio, labels = videos(30, 12)
    save_model(attach_memory(base, train_visual, train_audio, labels), tmp_path / "hybrid")
    hybrid, plain = load_with_and_without_memory(tmp_path / "hybrid")
    assert hybrid.config.memory["videos"] == 30 and plain.config.memory is None
    assert not hybrid.training and not plain.training


def test_saved_with_int8_weights_and_reloaded(base, tmp_path):
    train_visual, train_audio, labels = videos(60, 6)
    visual, audio, _ = videos(8, 7)
    visual, audio = torch.from_numpy(visual), torch.from_numpy(audio)
    hybrid = attach_memory(base, train_visual, train_audio, labels, dim=32)
    save_model(hybrid, tmp_path / "f32")
    save_model(hybrid, tmp_path / "q8", dtype="int8")
    f32, meta = load_model(tmp_path / "f32")
    q8, meta8 = load_model(tmp_path / "q8")
    assert meta8["weights_dtype"] == "int8" and meta["model"]["memory"]["videos"] == 60
    with torch.no_grad():
        torch.testing.assert_close(f32.eval()(visual, audio), hybrid(visual, audio))
        # int8 weight matrices: scores move, but only a little
        diff = (torch.sigmoid(q8.eval()(visual, audio)) - torch.sigmoid(hybrid(visual, audio))).abs().max()
    assert 0 < diff < 0.02
    from safetensors.torch import load_file

    stored = load_file(tmp_path / "q8" / "model.safetensors")
    big = [k for k, v in stored.items() if v.dtype == torch.int8 and not k.startswith("memory.")]
    assert big and all(k + ".int8_scale" in stored for k in big)


def test_bad_memory_settings_in_config_are_one_line_errors(base, tmp_path):
    train_visual, train_audio, labels = videos(20, 8)
    save_model(attach_memory(base, train_visual, train_audio, labels), tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["memory"]["k"] = 0
    config_path.write_text(json.dumps(config))
    with pytest.raises(VtagError, match="memory k must be a positive integer") as info:
        load_model(tmp_path / "m")
    assert "\n" not in str(info.value)
    with pytest.raises(VtagError, match="memory bits must be 8 or 4"):
        attach_memory(base, train_visual, train_audio, labels, bits=2)
    with pytest.raises(VtagError, match="unknown memory setting"):
        attach_memory(base, train_visual, train_audio, labels, neighbours=3)
    with pytest.raises(VtagError, match="no labels"):
        attach_memory(base, train_visual, train_audio, [None] * 20)


def test_cli_memory_then_eval(tmp_path):
    from typer.testing import CliRunner

    from vtag.cli import app

    train_visual, train_audio, labels = videos(64, 9)
    records = [YT8MRecord(f"m{i:03d}", lab, v, a) for i, (v, a, lab) in enumerate(zip(train_visual, train_audio, labels))]
    shard = tmp_path / "train.tfrecord"
    write_records(shard, records)
    torch.manual_seed(0)
    save_model(create_model("fc-early-fusion", num_classes=3862, hidden=16), tmp_path / "base",
               extra={"vocabulary": "2018"})
    runner = CliRunner()
    result = runner.invoke(app, ["memory", str(shard), "--model", str(tmp_path / "base"), "--out", str(tmp_path / "hy"),
                                 "--k", "1", "--temperature", "0.01", "--weight", "0.99"])
    assert result.exit_code == 0, result.output
    assert "memory of 64 videos" in result.output
    meta = json.loads((tmp_path / "hy" / "config.json").read_text())
    assert meta["vocabulary"] == "2018" and meta["memory_of"]["videos"] == 64
    # scored on the videos it remembers, the nearest neighbour is the video itself: Hit@1 is perfect
    result = runner.invoke(app, ["eval", str(shard), "--model", str(tmp_path / "hy"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hit_at_1"] == 1.0
    result = runner.invoke(app, ["memory", str(shard), "--model", str(tmp_path / "base"), "--out", str(tmp_path / "x"),
                                 "--weight", "1.5"])
    assert isinstance(result.exception, VtagError) and "memory weight must be in" in str(result.exception)
    # 2017-schema records (key video_id) into a 2018 model: label numbers would mean other classes
    old_schema = tmp_path / "2017.tfrecord"
    write_records(old_schema, [YT8MRecord(r.id, r.labels, r.rgb, r.audio, schema="2017") for r in records])
    result = runner.invoke(app, ["memory", str(old_schema), "--model", str(tmp_path / "base"), "--out", str(tmp_path / "y")])
    assert isinstance(result.exception, VtagError) and "2017 vocabulary" in str(result.exception)

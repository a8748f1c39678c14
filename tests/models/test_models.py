"""The model zoo: paper-size parameter counts (meta device), small-config forward/backward, save/load,
attention that depends on what it should, config and file errors, the `vtag models` command."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from vtag.models.attention import SelfAttention
from vtag.errors import VtagError
from vtag.models.registry import MODELS, ModelConfig, count_parameters, create_model, paper_config, paper_table
from vtag.models.storage import load_model, save_model

# Small enough to build, run and save all 18 models in seconds; 4 tokens of 16 projected to 32 wide
# exercises the tokenizer's projections, which the paper configuration does not use.
SMALL = dict(num_classes=50, hidden=64, attention_dim=32, num_heads=4, tokens=4)
CROSS_MODAL = ["audio-visual-attention", "self-cross-modal-attention", "self-attended-cross-modal-fcrn"]
SELF_ONLY_LATE = ["attend-fusion", "fc-attention", "residual-attention-late-fusion"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine a second thread that waits for a
    busy core makes each step 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(name: str, input_spec: str = "mean", **overrides) -> nn.Module:
    return create_model(name, input_spec=input_spec, **{**SMALL, **overrides})


def inputs(model: nn.Module, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dv, da = model.config.input_dims
    return torch.randn(batch, dv, generator=g), torch.randn(batch, da, generator=g)


# ---- the paper's sizes ---------------------------------------------------------------------------

def test_registry_has_the_papers_models():
    assert len(MODELS) == 18
    titles = {spec.title for spec in MODELS.values()}
    assert {"Attend-Fusion", "FC Late Fusion", "Self-Attended Cross-Modal FCRN Network"} <= titles


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_matches_the_paper(name):
    count = count_parameters(name)
    paper = MODELS[name].paper_params
    assert abs(count - paper) / paper <= 0.03, f"{name}: {count / 1e6:.2f}M vs paper {paper / 1e6:.0f}M"


def test_worked_examples_from_the_design_notes():
    # FC Late: per modality in->8000->8000->8000, concat(16000)->4716.
    fc = lambda i, o: i * o + o  # noqa: E731
    late = fc(128, 8000) + fc(1024, 8000) + 4 * fc(8000, 8000) + fc(16000, 4716)
    assert count_parameters("fc-late-fusion") == late
    no_attention = fc(128, 2048) + fc(1024, 2048) + fc(4096, 4716)
    assert count_parameters("attend-fusion-no-attention") == no_attention


def test_counts_fit_mean_inputs_not_mean_plus_std():
    """The paper's text says mean+std inputs; its counts only fit mean inputs (docs/MODELS.md)."""
    mean = {r["name"]: r for r in paper_table("mean")}
    both = {r["name"]: r for r in paper_table("mean+std")}
    assert all(abs(r["difference_pct"]) <= 3 for r in mean.values())
    assert both["fc-visual"]["difference_pct"] > 5 and both["attend-fusion-no-attention"]["difference_pct"] > 5


def test_count_parameters_allocates_nothing_and_agrees_with_a_built_model():
    config = replace(paper_config("fc-residual-gated-late-fusion"), **{k: v for k, v in SMALL.items()})
    model = create_model(config.name, **SMALL)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters()) == count_parameters(model)
    # a 416M-parameter model counted on the meta device: fast and no real memory
    assert count_parameters("fc-residual-gated-late-fusion") > 400_000_000


# ---- every model runs ----------------------------------------------------------------------------

@pytest.mark.parametrize("input_spec", ["mean", "mean+std"])
@pytest.mark.parametrize("name", list(MODELS))
def test_forward_backward_small(name, input_spec):
    torch.manual_seed(0)
    model = small(name, input_spec)
    assert model.config.name == name and model.config.input_spec == input_spec
    visual, audio = inputs(model)
    logits = model(visual, audio)
    assert logits.shape == (3, 50) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters that get no gradient: {unused[:5]}"


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_round_trip(tmp_path, name):
    torch.manual_seed(1)
    model = small(name).eval()
    visual, audio = inputs(model)
    save_model(model, tmp_path, extra={"vocabulary": "2018", "metrics": {"gap": 0.5}})
    loaded, meta = load_model(tmp_path)
    assert meta["model"] == model.config.to_dict() and meta["vocabulary"] == "2018"
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(model(visual, audio), loaded.eval()(visual, audio))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_half_precision_file_loads_as_float32(tmp_path):
    model = small("attend-fusion").eval()
    save_model(model, tmp_path / "fp32")
    save_model(model, tmp_path / "fp16", dtype="float16")
    sizes = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("fp32", "fp16")}
    assert sizes["fp16"] < 0.6 * sizes["fp32"]
    loaded, meta = load_model(tmp_path / "fp16" / "config.json")
    assert meta["weights_dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    visual, audio = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(visual, audio), model(visual, audio), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype, ratio", [("int8", 0.3), ("int4", 0.2)])
def test_quantised_weight_files_load_close_to_float32(tmp_path, dtype, ratio):
    torch.manual_seed(0)
    model = create_model("fc-residual-gated-early-fusion", num_classes=300, hidden=128).eval()
    save_model(model, tmp_path / "fp32")
    save_model(model, tmp_path / dtype, dtype=dtype)
    sizes = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("fp32", dtype)}
    assert sizes[dtype] < ratio * sizes["fp32"]
    loaded, meta = load_model(tmp_path / dtype)
    assert meta["weights_dtype"] == dtype
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert value.dtype == original[key].dtype and value.shape == original[key].shape
        # every weight within half a quantisation step of its group's largest weight
        levels = 127 if dtype == "int8" else 7
        assert (value - original[key]).abs().max() <= original[key].abs().max() / levels / 2 + 1e-3, key
    visual, audio = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(loaded.eval()(visual, audio)), torch.sigmoid(model(visual, audio)),
                                   atol=0.05, rtol=0)


def test_ensemble_averages_its_members_logits_and_round_trips(tmp_path):
    from vtag.models.ensemble import ensemble_of

    first, second = (small("fc-residual-gated-early-fusion").eval() for _ in range(2))
    ensemble = ensemble_of([first, second])
    assert ensemble.config.members == 2
    assert count_parameters(ensemble) == 2 * count_parameters(first)
    visual, audio = inputs(first)
    with torch.no_grad():
        want = (first(visual, audio) + second(visual, audio)) / 2
        torch.testing.assert_close(ensemble(visual, audio), want)
        save_model(ensemble, tmp_path / "ens")
        loaded, _ = load_model(tmp_path / "ens")
        torch.testing.assert_close(loaded.eval()(visual, audio), want)
    with pytest.raises(VtagError, match="differs from model 1 in hidden"):
        ensemble_of([first, small("fc-residual-gated-early-fusion", hidden=32)])
    with pytest.raises(VtagError, match="at least two"):
        ensemble_of([first])
    with pytest.raises(VtagError, match="an ensemble already"):
        ensemble_of([ensemble, first])


def test_cli_ensemble_then_memory(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from vtag.cli import app
    from vtag.io.records import YT8MRecord, write_records

    for index in range(2):
        torch.manual_seed(index)
        save_model(create_model("fc-early-fusion", hidden=64), tmp_path / f"m{index}", extra={"vocabulary": "2018"})
    runner = CliRunner()
    result = runner.invoke(app, ["ensemble", str(tmp_path / "m0"), str(tmp_path / "m1"), "--out", str(tmp_path / "ens"),
                                 "--save-dtype", "int4"])
    assert result.exit_code == 0, result.output
    ensemble, meta = load_model(tmp_path / "ens")
    assert ensemble.config.members == 2 and meta["vocabulary"] == "2018" and meta["weights_dtype"] == "int4"
    rng = np.random.default_rng(0)
    shard = tmp_path / "videos.tfrecord"
    write_records(shard, [YT8MRecord(f"v{i}", np.array([i % 7]), rng.normal(size=1024).astype(np.float32),
                                     rng.normal(size=128).astype(np.float32)) for i in range(20)])
    result = runner.invoke(app, ["memory", str(shard), "--model", str(tmp_path / "ens"), "--out", str(tmp_path / "hy")])
    assert result.exit_code == 0, result.output
    hybrid, _ = load_model(tmp_path / "hy")
    assert hybrid.config.members == 2 and hybrid.config.memory["videos"] == 20
    result = runner.invoke(app, ["eval", str(shard), "--model", str(tmp_path / "hy"), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_save_unwraps_a_ddp_style_wrapper(tmp_path):
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = small("fc-early-fusion")
    save_model(Wrapper(model), tmp_path)
    loaded, _ = load_model(tmp_path / "model.safetensors")
    assert loaded.state_dict().keys() == model.state_dict().keys()


# ---- attention depends on what it should ---------------------------------------------------------

@pytest.mark.parametrize("name", CROSS_MODAL)
def test_cross_modal_streams_depend_on_the_other_modality(name):
    model = small(name).eval()
    visual, audio = inputs(model)
    other_visual, other_audio = inputs(model, seed=7)
    with torch.no_grad():
        base = model.encode(visual, audio)
        new_visual = model.encode(other_visual, audio)
        new_audio = model.encode(visual, other_audio)
    # audio queries visual tokens: changes with the visual input although its queries did not change
    assert not torch.allclose(base["visual|audio"], new_visual["visual|audio"])
    assert not torch.allclose(base["audio|visual"], new_audio["audio|visual"])
    # the self-attended streams stay within their modality
    assert torch.equal(base["audio"], new_visual["audio"]) and torch.equal(base["visual"], new_audio["visual"])


@pytest.mark.parametrize("name", SELF_ONLY_LATE)
def test_self_attention_branches_ignore_the_other_modality(name):
    model = small(name).eval()
    visual, audio = inputs(model)
    other_visual, other_audio = inputs(model, seed=7)
    with torch.no_grad():
        base = model.encode(visual, audio)
        assert torch.equal(base["audio"], model.encode(other_visual, audio)["audio"])
        assert torch.equal(base["visual"], model.encode(visual, other_audio)["visual"])


def test_self_attention_mixes_tokens():
    """Attention over several tokens: a change in one chunk reaches the other chunks' outputs, which
    could not happen if attention saw a single vector (or treated tokens independently)."""
    torch.manual_seed(0)
    block = SelfAttention(hidden=64, tokens=4, attention_dim=16, num_heads=2, ffn_mult=2, dropout=0.0, layers=1).eval()
    x = torch.randn(2, 64)
    y = x.clone()
    y[:, 48:] = torch.randn(2, 16)  # only the last token changes
    with torch.no_grad():
        a, b = block(x), block(y)
    assert not torch.allclose(a[:, :16], b[:, :16])


@pytest.mark.parametrize("name", ["fc-audio", "attend-fusion-audio-only"])
def test_single_modality_models_ignore_the_other_input(name):
    model = small(name).eval()
    visual, audio = inputs(model)
    other_visual, _ = inputs(model, seed=3)
    with torch.no_grad():
        assert torch.equal(model(visual, audio), model(other_visual, audio))


# ---- options beyond the paper: input batch norm, mixture-of-experts classifier -------------------

EXTRAS = [dict(input_norm=True), dict(experts=3), dict(input_norm=True, experts=2)]


@pytest.mark.parametrize("extra", EXTRAS)
def test_extra_options_forward_backward_and_round_trip(tmp_path, extra):
    torch.manual_seed(2)
    model = small("fc-residual-gated-early-fusion", **extra)
    visual, audio = inputs(model, batch=5)
    logits = model(visual, audio)
    assert logits.shape == (5, 50) and torch.isfinite(logits).all()
    nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    model.eval()
    save_model(model, tmp_path, dtype="float32")
    loaded, meta = load_model(tmp_path)
    assert loaded.config == model.config and meta["model"]["input_norm"] == extra.get("input_norm", False)
    with torch.no_grad():  # the batch norm's running statistics travel with the weights
        assert torch.equal(model(visual, audio), loaded.eval()(visual, audio))


def test_extra_options_off_leave_the_papers_models_unchanged():
    config = paper_config("fc-residual-gated-early-fusion")
    assert (config.input_norm, config.experts) == (False, 0)
    plain = create_model("fc-residual-gated-early-fusion", **SMALL)
    assert not any(k.startswith("input_norm") for k in plain.state_dict())
    assert isinstance(plain.classifier, nn.Linear)
    normed = create_model("fc-residual-gated-early-fusion", input_norm=True, **SMALL)
    assert count_parameters(normed) == count_parameters(plain) + 2 * (1024 + 128)


def test_input_norm_standardises_each_modality():
    torch.manual_seed(3)
    model = small("fc-early-fusion", input_norm=True).train()
    visual, audio = 5 + 3 * torch.randn(64, 1024), -2 + 0.1 * torch.randn(64, 128)
    model(visual, audio)
    seen = {}
    model.body.register_forward_hook(lambda module, args, out: seen.update(x=args[0]))  # returns None
    model(visual, audio)
    x = seen["x"]
    assert x.mean(0).abs().max() < 1e-4 and (x.std(0, unbiased=False) - 1).abs().max() < 1e-2


def test_mixture_of_experts_is_the_logit_of_the_gated_mixture():
    torch.manual_seed(4)
    model = small("fc-residual-early-fusion", experts=3).eval()
    visual, audio = inputs(model)
    moe = model.classifier
    with torch.no_grad():
        features = model.encode(visual, audio)["fused"]
        gates = torch.softmax(moe.gate(features).view(3, 50, 3), dim=-1)
        probs = torch.stack([torch.sigmoid(e(features)) for e in moe.experts], dim=-1)
        expected = (gates * probs).sum(-1)
        assert torch.allclose(torch.sigmoid(model(visual, audio)), expected, atol=1e-6)


def test_mixture_of_experts_starts_at_the_label_prior():
    """vtag.tasks.train sets the bias of the experts, not of the gate, so the mixture starts at the prior."""
    import numpy as np

    from vtag.tasks.train import init_classifier_bias

    torch.manual_seed(5)
    model = small("fc-residual-gated-early-fusion", experts=2, dropout=0.0).eval()
    with torch.no_grad():
        for expert in model.classifier.experts:
            expert.weight.zero_()
    labels = [np.array([0, 1]), np.array([0]), np.array([2]), np.array([0])]
    init_classifier_bias(model, labels, 50)
    prior = (np.bincount(np.concatenate(labels), minlength=50) + 1.0) / (len(labels) + 2.0)
    with torch.no_grad():
        probs = torch.sigmoid(model(*inputs(model)))
    assert torch.allclose(probs, torch.from_numpy(prior).float().expand_as(probs), atol=1e-5)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "attend-fusion", "experts": 2}, "early-fusion"),
        ({"name": "fc-late-fusion", "experts": 2}, "early-fusion"),
        ({"name": "fc-early-fusion", "experts": -1}, "experts"),
        ({"name": "fc-early-fusion", "input_norm": "yes"}, "input_norm"),
    ],
)
def test_bad_extra_options_are_rejected(data, message):
    with pytest.raises(VtagError, match=message):
        ModelConfig.from_dict(data)


# ---- configs and errors --------------------------------------------------------------------------

def test_config_round_trips_through_json():
    config = small("self-cross-modal-attention", "mean+std").config
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_paper_config():
    config = paper_config("attend-fusion")
    assert (config.num_classes, config.input_spec, config.hidden, config.attention_dim, config.dropout) == (
        4716, "mean", 2048, 1024, 0.4)
    assert paper_config("fc-late-fusion").hidden == 8000


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(VtagError, match="attend-fusion"):
        create_model("atend-fusion")
    with pytest.raises(VtagError, match="unknown model"):
        paper_config("resnet50")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "attend-fusion", "widht": 3}, "unknown model setting"),
        ({"num_classes": 3}, "no 'name'"),
        ({"name": "attend-fusion", "input_spec": "max"}, "input_spec"),
        ({"name": "attend-fusion", "hidden": 0}, "hidden"),
        ({"name": "attend-fusion", "hidden": 100, "tokens": 3}, "tokens"),
        ({"name": "attend-fusion", "attention_dim": 30, "num_heads": 4}, "num_heads"),
        ({"name": "attend-fusion", "dropout": 1.5}, "dropout"),
        ({"name": "attend-fusion", "members": 0}, "members must be a positive integer"),
    ],
)
def test_bad_configs_are_rejected(data, message):
    with pytest.raises(VtagError, match=message):
        ModelConfig.from_dict(data)


def test_bad_overrides_and_inputs():
    with pytest.raises(VtagError, match="unknown model setting"):
        create_model("fc-audio", width=10)
    model = small("fc-early-fusion")
    visual, audio = inputs(model)
    with pytest.raises(VtagError, match=r"expects visual \[B, 1024\]"):
        model(torch.randn(3, 2048), audio)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(VtagError, match="config.json"):
        load_model(tmp_path)
    model = small("fc-visual")
    save_model(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(VtagError, match="model.safetensors"):
        load_model(tmp_path)
    weights.unlink()
    with pytest.raises(VtagError, match="model.safetensors: missing"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(VtagError, match="config.json"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_the_config_are_rejected(tmp_path):
    save_model(small("fc-visual"), tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["model"]["hidden"] = 32
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VtagError, match="do not match"):
        load_model(tmp_path)


# ---- CLI -----------------------------------------------------------------------------------------

def test_cli_models_json_and_table():
    from typer.testing import CliRunner

    from vtag.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]  # JSON Lines
    assert [r["name"] for r in rows] == list(MODELS)
    by_name = {r["name"]: r for r in rows}
    assert by_name["attend-fusion"]["title"] == "Attend-Fusion"
    assert by_name["fc-late-fusion"]["paper_params"] == 341_000_000
    assert all(isinstance(r["params"], int) and abs(r["params"] - r["paper_params"]) <= 0.03 * r["paper_params"]
               for r in rows)
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "Attend-Fusion" in table.output and "72M" in table.output


@pytest.mark.parametrize("name", ["attend-fusion", "self-attended-cross-modal-fcrn", "fc-residual-gated-late-fusion"])
def test_small_models_can_fit_a_toy_task(name):
    """Gradients reach where they should: labels that need both modalities are learnt quickly."""
    torch.manual_seed(0)
    model = small(name, dropout=0.0)
    visual, audio = torch.randn(32, 1024), torch.randn(32, 128)
    labels = ((visual[:, :10] + audio[:, :10]) > 0).float().repeat(1, 5)  # 50 classes
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = nn.functional.binary_cross_entropy_with_logits(model(visual, audio), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_resolve_device():
    from vtag.devices import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(VtagError, match="use auto, cpu or cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(VtagError, match="no CUDA GPU is available"):
            resolve_device("cuda")

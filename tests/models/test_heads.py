"""Head models: name matching, rows carried over, the memory's labels mapped, saving only the head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from vtag.errors import VtagError
from vtag.io.vocab import Vocabulary
from vtag.models.attach import attach_memory
from vtag.models.ensemble import ensemble_of
from vtag.models.heads import UNMATCHED_BIAS, name_matches, networks, save_head_model, transfer_head
from vtag.models.registry import create_model
from vtag.models.storage import load_model, save_model
from vtag.models.trunk_files import is_own


def vocabulary(source: str, names: list[str]) -> Vocabulary:
    return Vocabulary(source, tuple(names), ("",) * len(names), ((),) * len(names))


SOURCE = vocabulary("old", ["Car", "Dog", "Guitar", "Games", "Cat"])
TARGET = vocabulary("new", ["piano", " dog ", "CAR", "Cat", "Bird", "car"])  # "car" twice: first one wins


def trunk(members: int = 2, memory: bool = True):
    torch.manual_seed(0)
    nets = [create_model("fc-residual-gated-early-fusion", num_classes=len(SOURCE), hidden=16).eval()
            for _ in range(members)]
    model = ensemble_of(nets) if members > 1 else nets[0]
    if memory:
        rng = np.random.default_rng(0)
        labels = [np.array([0, 3]), np.array([3]), np.array([1, 4]), np.array([2])] * 5
        model = attach_memory(model, rng.normal(size=(20, 1024)).astype(np.float32),
                              rng.normal(size=(20, 128)).astype(np.float32), labels, dim=8, bits=8, k=3)
    return model.eval()


def test_names_match_ignoring_case_and_spaces_once_each():
    pairs = name_matches(SOURCE, TARGET)
    assert pairs.tolist() == [[0, 2], [1, 1], [4, 3]]


def test_loose_matches_plurals_qualifiers_and_unicode_forms_after_exact_names():
    source = vocabulary("old", ["Game", "Trailer (promotion)", "Track (rail transport)", "Track (music)",
                                "Pok\u00e9mon", "Drum", "Drums", "Category"])
    target = vocabulary("new", ["Games", "Trailer", "Track", "Poke\u0301mon", "Drums", "Categories"])
    pairs = name_matches(source, target).tolist()
    # "Drums" is taken by its exact twin first; "Track" has two qualified forms, so it stays unmatched
    assert pairs == [[6, 4], [0, 0], [1, 1], [4, 3], [7, 5]]
    assert name_matches(source, target, loose=False).tolist() == [[6, 4]]


def test_matched_rows_are_copied_and_the_others_start_rare():
    model = trunk()
    head = transfer_head(model, SOURCE, TARGET)
    assert head.config.num_classes == len(TARGET)
    for old, new in zip(networks(model), networks(head)):
        assert torch.equal(new.classifier.weight[2], old.classifier.weight[0])  # Car
        assert torch.equal(new.classifier.weight[3], old.classifier.weight[4])  # Cat
        assert torch.equal(new.classifier.bias[1], old.classifier.bias[1])  # dog
        for unmatched in (0, 4, 5):
            assert not new.classifier.weight[unmatched].any() and new.classifier.bias[unmatched] == UNMATCHED_BIAS
    old_state, new_state = model.state_dict(), head.state_dict()
    shared = [k for k in old_state if not is_own(k)]
    assert shared and all(torch.equal(old_state[k], new_state[k]) for k in shared)


def test_memory_labels_are_mapped_and_unmatched_ones_dropped():
    model = trunk()
    head = transfer_head(model, SOURCE, TARGET)
    old, new = model.memory.state_dict(), head.memory
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in old.items() if not k.startswith("label_"))
    offsets, values = new.label_offsets.tolist(), new.label_values.tolist()
    per_video = [sorted(values[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]
    # source labels [0, 3] -> Car=2, Games dropped; [3] -> nothing; [1, 4] -> dog=1, Cat=3; [2] Guitar dropped
    assert per_video[:4] == [[2], [], [1, 3], []]
    assert head.config.memory["labels"] == len(values)


def test_unmatched_vocabularies_and_wrong_sizes_are_refused():
    with pytest.raises(VtagError, match="nothing to transfer"):
        transfer_head(trunk(memory=False), SOURCE, vocabulary("x", ["a", "b"]))
    with pytest.raises(VtagError, match="5 classes"):
        transfer_head(trunk(memory=False), TARGET, SOURCE)


@pytest.mark.parametrize("dtype", ["float32", "int4"])
def test_a_saved_head_holds_only_its_own_tensors_and_loads_with_its_trunk(tmp_path, dtype):
    model = trunk()
    save_model(model, tmp_path / "trunk", extra={"vocabulary": "old"}, dtype="int4")
    stored_trunk, _ = load_model(tmp_path / "trunk")
    head = transfer_head(stored_trunk, SOURCE, TARGET)
    save_head_model(head, tmp_path / "head", tmp_path / "trunk", extra={"vocabulary": "new"}, dtype=dtype)

    meta = json.loads((tmp_path / "head" / "config.json").read_text())
    assert meta["trunk"] == "../trunk" and meta["vocabulary"] == "new"
    with safe_open(tmp_path / "head" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert keys and all("classifier" in k or k.startswith("memory.label_") for k in keys)

    loaded, _ = load_model(tmp_path / "head")
    rng = np.random.default_rng(1)
    visual = torch.from_numpy(rng.normal(size=(6, 1024)).astype(np.float32))
    audio = torch.from_numpy(rng.normal(size=(6, 128)).astype(np.float32))
    with torch.no_grad():
        want, got = head(visual, audio), loaded.eval()(visual, audio)
    tolerance = 1e-5 if dtype == "float32" else 0.05  # int4 rounds the head's rows
    assert torch.allclose(want, got, atol=tolerance * float(want.abs().max()))


def test_a_head_without_its_trunk_is_one_clear_error(tmp_path):
    model = trunk(memory=False)
    save_model(model, tmp_path / "trunk")
    save_head_model(transfer_head(model, SOURCE, TARGET), tmp_path / "head", tmp_path / "trunk")
    (tmp_path / "trunk" / "model.safetensors").unlink()
    with pytest.raises(VtagError, match="trunk .* is missing; keep the two model folders side by side"):
        load_model(tmp_path / "head")


def test_a_head_refuses_a_trunk_that_changed_since_it_was_fitted(tmp_path):
    model = trunk(memory=False)
    save_model(model, tmp_path / "trunk")
    save_head_model(transfer_head(model, SOURCE, TARGET), tmp_path / "head", tmp_path / "trunk")
    load_model(tmp_path / "head")
    torch.manual_seed(5)
    save_model(create_model("fc-residual-gated-early-fusion", num_classes=len(SOURCE), hidden=16), tmp_path / "trunk")
    with pytest.raises(VtagError, match="has changed since the head was fitted .* `vtag transfer`"):
        load_model(tmp_path / "head")

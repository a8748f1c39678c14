"""EvaluationMetrics on hand-computed cases (DESIGN.md §5), tie order, and batching invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtag.errors import VtagError
from vtag.tasks.metrics import EvaluationMetrics


def summary_of(scores, labels, **kwargs):
    scores = np.asarray(scores, np.float32)
    metrics = EvaluationMetrics(scores.shape[1], **kwargs)
    metrics.accumulate(scores, labels)
    return metrics.summary()


def test_two_videos_hand_computed():
    # A: top 2 = c0 (+), c1 (-); its second label c2 is outside the top 2 but still in the denominator.
    # B: top 2 = c1 (+), c2 (-). Pooled: 0.9+, 0.8-, 0.7+, 0.6- over 3 positives.
    scores = [[0.9, 0.8, 0.1], [0.3, 0.7, 0.6]]
    labels = [np.array([0, 2]), np.array([1])]
    got = summary_of(scores, labels, top_k=2)
    assert got["gap"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert got["hit_at_1"] == pytest.approx(1.0)
    assert got["perr"] == pytest.approx((1 / 2 + 1) / 2)
    # class 0: [0.9+] over 1 positive -> 1; class 1: [0.8-, 0.7+] -> 1/2; class 2: [0.6-] -> 0
    assert got["map"] == pytest.approx((1 + 0.5 + 0) / 3)
    # threshold 0.5 predicts A{0,1}, B{1,2}: TP 2, FP 2, FN 1
    assert got["f1_micro"] == pytest.approx(4 / 7)
    assert got["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert got["threshold"] == 0.5 and got["videos"] == 2
    assert set(got) == {"gap", "hit_at_1", "perr", "map", "f1_micro", "f1_macro", "threshold", "videos"}


def test_video_with_more_than_20_labels():
    # 25 true labels, all ranked first: only 20 fit in the top 20, the other 5 still count as positives.
    scores = np.linspace(1.0, 0.01, 30)[None, :]
    labels = [np.arange(25)]
    got = summary_of(scores, labels)
    assert got["gap"] == pytest.approx(20 / 25)
    assert got["perr"] == pytest.approx(1.0)  # k = 25 looks past the top 20
    assert got["map"] == pytest.approx(20 / 25)  # classes 20-24 have positives but AP 0
    assert got["hit_at_1"] == 1.0


def test_ties_inside_a_video_rank_by_class_index():
    flat = np.full((1, 4), 0.5)
    assert summary_of(flat, [np.array([3])], top_k=2)["gap"] == 0.0  # top 2 = classes 0, 1
    assert summary_of(flat, [np.array([3])], top_k=2)["hit_at_1"] == 0.0  # argmax = class 0
    assert summary_of(flat, [np.array([1])], top_k=2)["gap"] == pytest.approx(0.5)  # c0-, c1+


def test_ties_across_videos_keep_accumulation_order():
    # Both videos put class 0 on top with the same score; A (first) is right, B is wrong.
    scores = np.full((2, 3), 0.5)
    labels = [np.array([0]), np.array([1])]
    assert summary_of(scores, labels, top_k=1)["gap"] == pytest.approx(1 / 2)  # [A+, B-] / 2 positives
    assert summary_of(scores[::-1], labels[::-1], top_k=1)["gap"] == pytest.approx(0.5 / 2)  # [B-, A+]


def test_perr_counts_only_positive_scores_and_videos_without_labels():
    scores = [[0.0, 0.2, 0.1], [0.9, 0.1, 0.1]]
    labels = [np.array([0]), np.array([], np.int64)]
    got = summary_of(scores, labels)
    # video 0: its top 1 is class 1 (wrong); video 1 has no labels and scores 0 but still counts.
    assert got["perr"] == 0.0 and got["hit_at_1"] == 0.0
    got = summary_of([[0.0, 0.0, 0.0]], [np.array([0])])
    assert got["perr"] == 0.0  # Google's PERR skips hits whose score is not > 0


def test_f1_macro_skips_classes_never_positive_nor_predicted():
    scores = [[0.9, 0.1, 0.1, 0.1]]
    got = summary_of(scores, [np.array([0])])
    assert got["f1_micro"] == 1.0 and got["f1_macro"] == 1.0  # classes 1-3 do not dilute it
    got = summary_of(scores, [np.array([0])], threshold=0.05)  # everything predicted now
    assert got["f1_micro"] == pytest.approx(2 / 5)
    assert got["f1_macro"] == pytest.approx(1 / 4)


def test_batching_label_formats_and_clear_do_not_change_results():
    rng = np.random.default_rng(1)
    scores = rng.random((300, 40)).astype(np.float32)
    multi_hot = (rng.random((300, 40)) < 0.08).astype(np.float32)
    whole = EvaluationMetrics(40)
    whole.accumulate(scores, multi_hot)
    expected = whole.summary()

    batched = EvaluationMetrics(40)
    for start in range(0, 300, 64):
        part = slice(start, start + 64)
        batched.accumulate(torch.from_numpy(scores[part]),
                           [np.flatnonzero(row) for row in multi_hot[part]])
    assert batched.summary() == pytest.approx(expected)
    assert 0.0 < expected["gap"] < 1.0

    batched.clear()
    assert batched.summary()["videos"] == 0
    batched.accumulate(scores, torch.from_numpy(multi_hot))
    assert batched.summary() == pytest.approx(expected)


def test_memory_keeps_only_top_k_per_video():
    metrics = EvaluationMetrics(500, top_k=20)
    metrics.accumulate(np.random.default_rng(0).random((64, 500)), np.zeros((64, 500)))
    assert sum(a.size for a in metrics._top_scores) == 64 * 20


def test_bad_inputs():
    metrics = EvaluationMetrics(5)
    with pytest.raises(VtagError, match="outside 0..4"):
        metrics.accumulate(np.zeros((1, 5)), [np.array([7])])
    with pytest.raises(ValueError, match="scores must be"):
        metrics.accumulate(np.zeros((1, 4)), [np.array([1])])
    with pytest.raises(ValueError):
        EvaluationMetrics(5, top_k=0)

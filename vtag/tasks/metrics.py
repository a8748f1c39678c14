"""YouTube-8M evaluation metrics with the semantics of Google's `eval_util.py` (DESIGN.md §5).

`EvaluationMetrics` accumulates batches of scores and labels and keeps only what the metrics need:
each video's top-k (score, class, is-positive) entries, per-class positive counts and per-class F1
counts. Memory is O(videos * top_k + classes), never O(videos * classes).

- GAP@k: pool every video's top-k entries, sort by score descending, non-interpolated AP whose recall
  denominator is every positive label of every video (also those outside anyone's top k). Computed
  once over the whole set, never averaged over batches.
- Hit@1: fraction of videos whose highest-scored class is a true label (argmax: lowest class index
  wins a tie; a video with no labels counts as a miss).
- PERR: per video, precision among the k highest-scored classes where k is its number of labels; as
  in Google's code a class only counts as a hit if its score is > 0, and a video with no labels
  contributes 0 (it still counts in the average).
- mAP: per-class AP over the same pooled top-k entries, the denominator being the class's positives
  over all videos; the mean skips classes with no positives in the set (a class with positives that
  never reached a top k contributes AP 0).
- F1 at `threshold` (score >= threshold is a predicted label): micro over all (video, class) pairs;
  macro averages per-class F1 over classes with at least one positive or one prediction.

Ties: Google shuffles the pooled entries with `random.seed(0)` before a stable descending sort, so its
order among equal scores is arbitrary but fixed. Here it is deterministic and documented instead:
within a video, equal scores rank by ascending class index (that also decides which classes enter the
top k); in the pooled GAP and per-class lists, equal scores keep accumulation order (earlier video
first, then the video's own rank order). With continuous scores, ties do not occur and both agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vtag.errors import VtagError

F1_MACRO_AVERAGING = "over classes with at least one positive or one prediction"


class EvaluationMetrics:
    """Accumulate scores and labels batch by batch; `summary()` gives the metrics over all of them."""

    def __init__(self, num_classes: int, top_k: int = 20, threshold: float = 0.5):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.num_classes = int(num_classes)
        self.top_k = min(int(top_k), self.num_classes)
        self.threshold = float(threshold)
        self.clear()

    def clear(self) -> None:
        self._top_scores: list[np.ndarray] = []  # [B, k] float64, per video in rank order
        self._top_classes: list[np.ndarray] = []  # [B, k] int64
        self._top_positive: list[np.ndarray] = []  # [B, k] bool
        self._class_positives = np.zeros(self.num_classes, np.int64)
        self._true_pos = np.zeros(self.num_classes, np.int64)
        self._false_pos = np.zeros(self.num_classes, np.int64)
        self._false_neg = np.zeros(self.num_classes, np.int64)
        self._hits_at_1 = 0.0
        self._perr_sum = 0.0
        self._videos = 0

    @property
    def videos(self) -> int:
        return self._videos

    def accumulate(self, scores, labels) -> None:
        """Add one batch. `scores`: [B, C] (probabilities, or any monotone score; F1 thresholds them
        as given). `labels`: multi-hot [B, C] or a sequence of B integer index arrays."""
        scores = _to_numpy(scores).astype(np.float64, copy=False)
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(f"scores must be [batch, {self.num_classes}], got {list(scores.shape)}")
        batch = scores.shape[0]
        truth = self._multi_hot(labels, batch)
        if batch == 0:
            return

        top_classes = _top_k_classes(scores, self.top_k)
        rows = np.arange(batch)[:, None]
        self._top_scores.append(scores[rows, top_classes])
        self._top_classes.append(top_classes)
        self._top_positive.append(truth[rows, top_classes])

        num_labels = truth.sum(axis=1)
        self._class_positives += truth.sum(axis=0)

        # argmax picks the lowest index among equal maxima, the same as numpy in eval_util.
        self._hits_at_1 += float(truth[np.arange(batch), scores.argmax(axis=1)].sum())
        self._perr_sum += _perr_sum(scores, truth, num_labels)

        predicted = scores >= self.threshold
        self._true_pos += (predicted & truth).sum(axis=0)
        self._false_pos += (predicted & ~truth).sum(axis=0)
        self._false_neg += (~predicted & truth).sum(axis=0)
        self._videos += batch

    def summary(self) -> dict:
        """Metrics over everything accumulated since the last `clear()`."""
        if self._videos == 0:
            return {"gap": 0.0, "hit_at_1": 0.0, "perr": 0.0, "map": 0.0, "f1_micro": 0.0,
                    "f1_macro": 0.0, "threshold": self.threshold, "videos": 0}
        scores = np.concatenate(self._top_scores).ravel()
        classes = np.concatenate(self._top_classes).ravel()
        positive = np.concatenate(self._top_positive).ravel()
        total_positives = int(self._class_positives.sum())

        order = np.argsort(-scores, kind="stable")
        gap = _average_precision(positive[order], total_positives)

        # Per-class lists: sort by class, then score descending; lexsort is stable, so equal scores
        # keep accumulation order, as in the pooled list.
        by_class = np.lexsort((-scores, classes))
        aps = _per_class_ap(classes[by_class], positive[by_class], self._class_positives)
        has_positive = self._class_positives > 0
        mean_ap = float(aps[has_positive].mean()) if has_positive.any() else 0.0

        tp, fp, fn = self._true_pos, self._false_pos, self._false_neg
        denom_micro = 2 * tp.sum() + fp.sum() + fn.sum()
        f1_micro = float(2 * tp.sum() / denom_micro) if denom_micro else 0.0
        denom = 2 * tp + fp + fn
        active = denom > 0
        f1_macro = float((2 * tp[active] / denom[active]).mean()) if active.any() else 0.0

        return {
            "gap": gap,
            "hit_at_1": self._hits_at_1 / self._videos,
            "perr": self._perr_sum / self._videos,
            "map": mean_ap,
            "f1_micro": f1_micro,
            "f1_macro": f1_macro,
            "threshold": self.threshold,
            "videos": self._videos,
        }

    def _multi_hot(self, labels, batch: int) -> np.ndarray:
        if (isinstance(labels, np.ndarray) and labels.ndim == 2) or _is_tensor_2d(labels):
            truth = _to_numpy(labels)
            if truth.shape != (batch, self.num_classes):
                raise ValueError(f"labels must be [{batch}, {self.num_classes}], got {list(truth.shape)}")
            return truth > 0
        if not isinstance(labels, Sequence) or len(labels) != batch:
            raise ValueError(f"labels must be a multi-hot [{batch}, {self.num_classes}] array or a "
                             f"sequence of {batch} index arrays")
        truth = np.zeros((batch, self.num_classes), dtype=bool)
        for row, indices in enumerate(labels):
            indices = np.asarray(_to_numpy(indices), dtype=np.int64).ravel()
            outside = indices[(indices < 0) | (indices >= self.num_classes)]
            if outside.size:
                raise VtagError(f"label index {int(outside[0])} in video {self._videos + row} is outside "
                                f"0..{self.num_classes - 1}: the model and the records use different vocabularies")
            truth[row, indices] = True
        return truth


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; metrics never need the graph
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.float16", "torch.bfloat16"):
            x = x.float()  # numpy has no bfloat16; float32/float64 keep their precision
        return x.numpy()
    return np.asarray(x)


def _is_tensor_2d(x) -> bool:
    return hasattr(x, "detach") and x.dim() == 2


def _top_k_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's k highest-scored classes in rank order: score descending, then class ascending."""
    batch, num_classes = scores.shape
    if k == num_classes:
        return np.argsort(-scores, axis=1, kind="stable")
    candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, candidates, 1).min(axis=1)
    # argpartition picks arbitrarily among scores equal to the k-th; rows with such a tie at the
    # boundary (rare with real scores) take the exact stable order instead.
    tied = (scores >= kth[:, None]).sum(axis=1) > k
    if tied.any():
        candidates[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    cand_scores = np.take_along_axis(scores, candidates, 1)
    order = np.lexsort((candidates, -cand_scores), axis=1)
    return np.take_along_axis(candidates, order, 1)


def _perr_sum(scores: np.ndarray, truth: np.ndarray, num_labels: np.ndarray) -> float:
    max_labels = int(num_labels.max())
    if max_labels == 0:
        return 0.0
    # The first k of a row's top-max_labels list are its top k under the same tie rule.
    top = _top_k_classes(scores, min(max_labels, scores.shape[1]))
    rows = np.arange(scores.shape[0])[:, None]
    hits = truth[rows, top] & (scores[rows, top] > 0)
    within_k = np.arange(top.shape[1])[None, :] < num_labels[:, None]
    per_video = (hits & within_k).sum(axis=1) / np.maximum(num_labels, 1)
    return float(per_video.sum())


def _average_precision(ranked_positive: np.ndarray, total_positives: int) -> float:
    """Non-interpolated AP of a ranked list of is-positive flags over `total_positives` positives."""
    if total_positives == 0 or not ranked_positive.any():
        return 0.0
    hits = np.cumsum(ranked_positive)
    precision_at_hits = hits[ranked_positive] / (np.flatnonzero(ranked_positive) + 1)
    return float(precision_at_hits.sum() / total_positives)


def _per_class_ap(classes: np.ndarray, positive: np.ndarray, class_positives: np.ndarray) -> np.ndarray:
    """AP per class from entries grouped by class (each group ranked); 0 where nothing qualifies."""
    num_classes = class_positives.shape[0]
    aps = np.zeros(num_classes, np.float64)
    if classes.size == 0:
        return aps
    starts = np.flatnonzero(np.r_[True, classes[1:] != classes[:-1]])
    group_of = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, classes.size]))
    rank = np.arange(classes.size) - starts[group_of] + 1
    hits_before = np.cumsum(positive) - positive
    hits = hits_before - hits_before[starts][group_of] + positive
    contrib = np.where(positive, hits / rank, 0.0)
    sums = np.add.reduceat(contrib, starts)
    group_classes = classes[starts]
    denom = class_positives[group_classes]
    aps[group_classes] = np.where(denom > 0, sums / np.maximum(denom, 1), 0.0)
    return aps

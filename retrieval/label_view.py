"""A user index's vectors grouped by label: each label's best score in one matrix product.

``UserIndex.search`` answers with one Python object per hit, so asking it for every
label's best score costs an object per vector. A ``LabelView`` keeps the order that
groups the index's rows by label, so that the same answer is one matrix product and a
maximum per group. It holds row numbers, never vectors: it describes one state of the
index (rebuilt after any write) and reads the matrix it is handed.

Scores are exact up to float rounding: BLAS may round one dot product a little
differently at another place in a matrix, so two concepts holding the same photo tie
only within that rounding. Where scores are equal, the label stored first comes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelScores:
    """Each label's best score for each query, over all the label's vectors (exact).

    ``scores[q, j]`` is the best score of ``labels[j]`` for query ``q``; ``labels`` are
    in the order of their first vector in the index. ``centroids``, when asked for:
    each label's normalised mean.
    """

    labels: list[str]
    scores: np.ndarray
    centroids: np.ndarray | None = None


class LabelView:
    """The rows of one index matrix (in storage order), grouped by label."""

    def __init__(self, row_labels: Sequence[str]) -> None:
        code_of: dict[str, int] = {}
        self._codes = np.fromiter(
            (code_of.setdefault(label, len(code_of)) for label in row_labels),
            dtype=np.intp,
            count=len(row_labels),
        )
        self.labels = list(code_of)
        self._code_of = code_of
        # Each label's rows together, in storage order within the label.
        self._grouped = np.argsort(self._codes, kind="stable")
        self._starts = np.concatenate(([0], np.cumsum(np.bincount(self._codes))))

    def scores(
        self,
        matrix: np.ndarray,
        queries: np.ndarray,
        labels: Iterable[str] | None = None,
        *,
        among: int | None = None,
        centroids: bool = False,
    ) -> LabelScores:
        """``LabelScores`` for ``queries`` of ``labels`` (those the view has; None: all),
        or with ``among``, of the labels of each query's ``among`` best rows (and of every
        row tied with the last of them)."""
        if labels is not None:
            codes = np.array(
                sorted(self._code_of[label] for label in set(labels) if label in self._code_of),
                dtype=np.intp,
            )
            rows, starts = self._rows_of(codes)
            scores = queries @ matrix[rows].T
        else:
            every = queries @ matrix.T
            if among is None:
                codes = np.arange(len(self.labels))
            else:
                codes = np.unique(self._codes[_best_columns(every, among).any(axis=0)])
            rows, starts = self._rows_of(codes)
            scores = every[:, rows]
        names = [self.labels[c] for c in codes]
        if not len(rows) or not len(queries):
            empty = np.zeros((len(queries), len(codes)), np.float32)
            return LabelScores(names, empty, None)
        best = np.maximum.reduceat(scores, starts, axis=1)
        means = _centroids(matrix, rows, starts) if centroids else None
        return LabelScores(names, best, means)

    def vectors(self, matrix: np.ndarray, labels: Iterable[str]) -> dict[str, np.ndarray]:
        """The rows of each of ``labels`` that the view has (copies), in storage order."""
        codes = sorted(self._code_of[label] for label in set(labels) if label in self._code_of)
        return {
            self.labels[c]: matrix[self._grouped[self._starts[c] : self._starts[c + 1]]]
            for c in codes
        }

    def _rows_of(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``codes``' labels, label after label, and where each label's begin."""
        sizes = self._starts[codes + 1] - self._starts[codes]
        starts = np.cumsum(sizes) - sizes
        if len(codes) == len(self.labels):
            return self._grouped, starts
        groups = [self._grouped[self._starts[c] : self._starts[c + 1]] for c in codes]
        return np.concatenate([*groups, np.zeros(0, np.intp)]), starts


def _best_columns(scores: np.ndarray, count: int) -> np.ndarray:
    """For each row, which of its columns score at least its ``count``-th best."""
    total = scores.shape[1]
    if count >= total:
        return np.ones(scores.shape, dtype=bool)
    return scores >= np.partition(scores, total - count, axis=1)[:, total - count, None]


def _centroids(matrix: np.ndarray, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each group's normalised mean (summed in float64, row by row in storage order)."""
    ends = [*starts[1:], len(rows)]
    sums = np.stack(
        [matrix[rows[s:e]].sum(axis=0, dtype=np.float64) for s, e in zip(starts, ends, strict=True)]
    )
    norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return (sums / norms).astype(np.float32)

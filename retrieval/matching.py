"""From raw index hits and the question's words to the concepts of one query."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from retrieval.common_words import is_bare_word_matchable
from retrieval.index import Hit, UserIndex


def name_key(name: str) -> str:
    """The form under which a concept name is unique and found in text: "<Bo>" -> "bo"."""
    return " ".join(name.strip().strip("<>").split()).casefold()


def named_in(text: str, names: Iterable[str]) -> set[str]:
    """The name keys among ``names`` that ``text`` mentions, as "<bo>" or as the word "bo".

    One pass over the text whatever the number of names (see ``NameFinder``).
    """
    return name_finder(tuple(sorted({name_key(name) for name in names} - {""}))).find(text)


class NameFinder:
    """Finds a set of concept names in text in one pass: one compiled pattern of every
    name, shaped as a trie (so the engine tries one branch per distinct next
    character, not one per name), matched where no word character touches it.

    Its cost grows with the text, not with names times text: a user with a
    thousand concepts costs one scan per text. Where two names start at the same
    place ("bo" and "bo bo"), the longer one is found.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(key for key in keys if key)
        bare = {key for key in self.keys if bare_word_matchable(key)}
        forms = [rf"<({_trie_pattern(_trie(self.keys))})>"] if self.keys else []
        if bare:
            forms.append(rf"({_trie_pattern(_trie(bare))})(?!\w)")
        self._pattern = re.compile(rf"(?<!\w)(?:{'|'.join(forms)})") if forms else None

    def find(self, text: str) -> set[str]:
        """The keys that ``text`` mentions (case-insensitive)."""
        if self._pattern is None or not text:
            return set()
        return {
            match.group(1) or match.group(match.lastindex or 1)
            for match in self._pattern.finditer(text.casefold())
        }


# A name this short is found only as "<a>": as a bare word it would be in every question.
MIN_BARE_WORD_CHARS = 2


def bare_word_matchable(key: str) -> bool:
    """Whether a concept named ``key`` is also found as a bare word, without its <>: not
    when it is one character, nor one common English word (``is_bare_word_matchable``)."""
    return sum(char.isalnum() for char in key) >= MIN_BARE_WORD_CHARS and is_bare_word_matchable(
        key
    )


def _trie(keys: Iterable[str]) -> dict[str, dict]:
    trie: dict[str, dict] = {}
    for key in keys:
        node = trie
        for char in key:
            node = node.setdefault(char, {})
        node[""] = {}
    return trie


def _trie_pattern(node: dict[str, dict]) -> str:
    """A regex matching the keys below ``node``, longest first at each branch."""
    branches = [re.escape(char) + _trie_pattern(child) for char, child in node.items() if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" in node:  # a key ends here; a longer one, tried first, may continue
        body = f"(?:{body})?"
    return body


@functools.lru_cache(maxsize=256)
def name_finder(keys: tuple[str, ...]) -> NameFinder:
    """A compiled finder for these name keys, shared while they stay the same (a user's
    concepts change rarely; compiling costs more than a scan)."""
    return NameFinder(keys)


@dataclass(frozen=True)
class VisualMatch:
    label: str
    score: float
    region: int


def best_per_label(hits_per_region: Sequence[Sequence[Hit]]) -> dict[str, VisualMatch]:
    """Aggregate hits of every region: each label keeps its best score and region."""
    best: dict[str, VisualMatch] = {}
    for region, hits in enumerate(hits_per_region):
        for hit in hits:
            current = best.get(hit.label)
            if current is None or hit.score > current.score:
                best[hit.label] = VisualMatch(label=hit.label, score=hit.score, region=region)
    return best


Aggregation = Literal["best", "winner"]


def search_concepts(
    index: UserIndex,
    queries: np.ndarray,
    *,
    top_k: int,
    min_score: float,
    aggregation: Aggregation = "best",
) -> list[VisualMatch]:
    """The ``top_k`` labels scoring at least ``min_score``, best first.

    ``"best"``: a label's score is its best over all queries (exact: the search
    widens until no vector left unseen could outrank the result). ``"winner"``:
    each query (a region of a photo) counts only for the label it matches best,
    so that a region showing one concept does not push its look-alikes ahead of
    a concept that another region shows.
    """
    size = len(index)
    if size == 0 or top_k <= 0:
        return []
    if aggregation == "winner":
        winners = best_per_label(index.search(queries, 1)).values()
        ranked = sorted((m for m in winners if m.score >= min_score), key=lambda m: -m.score)
        return ranked[:top_k]
    k = min(size, max(16, top_k * 4))
    while True:
        rows = index.search(queries, k)
        ranked = sorted(
            (m for m in best_per_label(rows).values() if m.score >= min_score),
            key=lambda match: -match.score,
        )
        # A label not seen yet scores at most the k-th score of some full row.
        bound = max((row[-1].score for row in rows if len(row) == k), default=-np.inf)
        if (
            k >= size
            or bound < min_score
            or (len(ranked) >= top_k and ranked[top_k - 1].score >= bound)
        ):
            return ranked[:top_k]
        k = min(size, k * 4)

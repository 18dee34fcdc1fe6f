"""Concept names: the key a name is unique under, and finding names in text.

Pure Python (no torch, no FAISS): the prompt builder and the service use it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from retrieval.common_words import common_words


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
    """Whether a concept named ``key`` (a name key: "bo", "my mug"; see ``name_key``) is
    also found as a bare word, without its <>: not when it is one character, nor one
    common English word ("can"). The one statement of this rule: the finder, the
    importer's warning and the tests use it."""
    return sum(char.isalnum() for char in key) >= MIN_BARE_WORD_CHARS and key not in common_words()


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

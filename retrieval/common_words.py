"""The common English words: a concept named by one is found in text only as ``<name>``.

``<can>`` always names the concept ``can``. A bare word names a concept only when that is
what a person means by it: "is bo at the beach?" means the dog ``bo``, but "Can you
describe this photo?" does not mean a concept named ``can``, nor "what time does the clock
show?" a concept named ``clock``. So a name that is one common English word (the list in
data/common_words.txt) is found in text only in angle brackets; any other name (``bo``,
``rex``, ``cat2``, ``backpack_dog``, and names of several words such as ``my mug``, which
a question hardly says by chance) also as bare words. The rule itself, with its other
half (a one-character name is found only as ``<x>``), is
``retrieval.names.bare_word_matchable``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def common_words() -> frozenset[str]:
    """The lower-case common English words shipped with rapport (about 38,000)."""
    text = resources.files("retrieval").joinpath("data/common_words.txt").read_text("utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )

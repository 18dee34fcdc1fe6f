"""What a stored photo costs against its app's byte quota: the one statement of the charge.

A file takes at least a block, and its rows take room of their own: a photo is charged at
least ``FILE_BLOCK_BYTES`` plus ``PHOTO_ROW_BYTES``, and each of its vectors 4 bytes a
dimension plus ``VECTOR_ROW_BYTES``. The same two formulas price a photo about to be
stored (Python integers) and sum what a tenant stores (SQL expressions): ``at_least`` is
the one difference, ``max`` in Python and a ``CASE`` in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FILE_BLOCK_BYTES = 4096
PHOTO_ROW_BYTES = 512
VECTOR_ROW_BYTES = 256
FLOAT32_BYTES = 4

# An int, or a SQL expression of one: the formulas are written once for both.
Amount = Any


def photo_charge(size_bytes: Amount, at_least: Callable[[Amount, int], Amount]) -> Amount:
    """A photo's file (at least a block) and its row."""
    return at_least(size_bytes, FILE_BLOCK_BYTES) + PHOTO_ROW_BYTES


def vector_charge(dim: Amount) -> Amount:
    """One vector of ``dim`` float32s and its row."""
    return dim * FLOAT32_BYTES + VECTOR_ROW_BYTES

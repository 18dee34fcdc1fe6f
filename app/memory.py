"""Give large freed buffers back to the operating system at once.

glibc serves big allocations with mmap only up to a threshold that it raises
after each large free (up to 32 MiB), so after a few decoded photos their
buffers come from the heap and stay in the process when freed: one request
with large photos would leave the server gigabytes bigger. A fixed threshold
keeps every buffer over it (photo pixels, tensors) on mmap, returned on free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_frees_to_os() -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))

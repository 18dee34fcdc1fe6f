from __future__ import annotations

import gc

from threadpoolctl import threadpool_info

from tests.conftest import LiveServer


def test_the_service_keeps_blas_to_one_thread(server: LiveServer) -> None:
    # Its matrix products are a few queries against one user's vectors: extra BLAS
    # threads would only spin after each one, burning CPU that requests need.
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_the_start_up_heap_is_kept_out_of_full_collections(server: LiveServer) -> None:
    # The models and libraries (~500k objects) would otherwise be walked by every full
    # collection, stopping the event loop for ~0.3 s each time.
    assert gc.get_freeze_count() > 100_000
    server.stop()
    assert gc.get_freeze_count() == 0  # given back at shutdown: nothing is pinned for good

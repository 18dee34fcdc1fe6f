from __future__ import annotations

from threadpoolctl import threadpool_info

from tests.conftest import LiveServer


def test_the_service_keeps_blas_to_one_thread(server: LiveServer) -> None:
    # Its matrix products are a few queries against one user's vectors: extra BLAS
    # threads would only spin after each one, burning CPU that requests need.
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)

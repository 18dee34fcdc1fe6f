from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.batching import BatchingEncoder, BatchStats, encoding_for
from retrieval.config import BatchingConfig
from retrieval.encoder import Encoder
from retrieval.errors import Overloaded
from retrieval.images import decode_image
from retrieval.regions import Box
from tests import factories


class GatedEncoder:
    """A real encoder whose forward passes wait for the test to open a gate."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.model_id, self.dim = encoder.model_id, encoder.dim
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.inner.preprocess(image)

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        self.entered.set()
        self.gate.wait(timeout=30)
        self.batches.append(len(tensors))
        return self.inner.encode_tensors(tensors)

    @property
    def pools_regions(self) -> bool:
        return False

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def input_size(self) -> int:
        return self.inner.input_size

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_tensors([self.preprocess(image) for image in images])

    def encode_regions(
        self, image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], side: int = 320
    ) -> np.ndarray:
        return self.prepare_regions(image, boxes, side)()

    def prepare_regions(
        self, image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], side: int = 320
    ) -> Callable[[], np.ndarray]:
        return self.inner.prepare_regions(image, boxes, side)

    def encode_regions_of(
        self, photos: Sequence[tuple[Image.Image, Sequence[Box]]], side: int = 320
    ) -> list[np.ndarray]:
        return [self.encode_regions(image, boxes, side) for image, boxes in photos]


def photos(count: int) -> list[Image.Image]:
    return [decode_image(factories.photo("dog", i % 5)).image for i in range(count)]


def test_concurrent_callers_share_forward_passes(encoder: Encoder) -> None:
    gated = GatedEncoder(encoder)
    seen: list[BatchStats] = []
    batching = BatchingEncoder(
        gated, BatchingConfig(max_batch=8, max_wait_ms=50), on_batch=seen.append
    )
    batching.start()
    try:
        # The first call occupies the worker; the next ten queue up meanwhile.
        first = batching.submit([encoder.preprocess(photos(1)[0])])
        assert gated.entered.wait(timeout=30)
        images = photos(10)
        queued = [batching.submit([encoder.preprocess(image)])[0] for image in images]
        assert batching.queue_depth == 10
        gated.gate.set()
        results = np.stack([future.result(timeout=30) for future in queued])
        first[0].result(timeout=30)
    finally:
        batching.stop()
    assert gated.batches == [1, 8, 2]
    assert [s.size for s in seen] == [1, 8, 2]
    # Batched results are the vectors each photo gets on its own.
    assert np.allclose(results, encoder.encode_images(images), atol=1e-5)


def test_forward_passes_run_on_the_configured_torch_threads(encoder: Encoder) -> None:
    seen: list[int] = []

    class Watching(GatedEncoder):
        def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
            seen.append(torch.get_num_threads())
            return self.inner.encode_tensors(tensors)

    batching = BatchingEncoder(Watching(encoder), BatchingConfig(torch_threads=1)).start()
    try:
        batching.encode_images(photos(1))
    finally:
        batching.stop()
    assert seen == [1]


def test_a_full_queue_refuses_work_instead_of_growing(encoder: Encoder) -> None:
    gated = GatedEncoder(encoder)
    batching = BatchingEncoder(gated, BatchingConfig(max_batch=2, queue_size=3)).start()
    tensor = encoder.preprocess(photos(1)[0])
    try:
        busy = batching.submit([tensor])
        assert gated.entered.wait(timeout=30)
        waiting = batching.submit([tensor, tensor, tensor])
        with pytest.raises(Overloaded):
            batching.submit([tensor])
        assert batching.queue_depth == 3
        gated.gate.set()
        for future in busy + waiting:
            assert future.result(timeout=30).shape == (encoder.dim,)
    finally:
        gated.gate.set()
        batching.stop()
    with pytest.raises(Overloaded):
        batching.submit([tensor])


def test_encode_images_matches_the_plain_encoder(encoder: Encoder) -> None:
    batching = BatchingEncoder(encoder).start()
    try:
        images = photos(3)
        assert np.allclose(batching.encode_images(images), encoder.encode_images(images), atol=1e-5)
        assert batching.encode_images([]).shape == (0, encoder.dim)
        assert batching.model_id == encoder.model_id
    finally:
        batching.stop()


def test_a_lone_caller_does_not_wait_for_company(encoder: Encoder) -> None:
    import time

    batching = BatchingEncoder(encoder, BatchingConfig(max_wait_ms=5000)).start()
    try:
        batching.encode_images(photos(1))  # warm-up
        started = time.perf_counter()
        batching.encode_images(photos(2))
        assert time.perf_counter() - started < 2.5
    finally:
        batching.stop()


class GatedPooling(GatedEncoder):
    """A gated encoder whose regions come from one pass of their own (the tiny ViT's);
    it notes the thread that prepares each photo and the one that runs its pass."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(encoder)
        self.threads: list[tuple[str, str]] = []  # (prepared in, passed in)

    @property
    def pools_regions(self) -> bool:
        return True

    def prepare_regions(
        self, image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], side: int = 320
    ) -> Callable[[], np.ndarray]:
        run = self.inner.prepare_regions(image, boxes, side)
        prepared_in = threading.current_thread().name

        def gated() -> np.ndarray:
            self.gate.wait(timeout=30)
            self.batches.append(-1)  # a pooled pass
            self.threads.append((prepared_in, threading.current_thread().name))
            return run()

        return gated


def test_pooled_regions_queue_as_one_job_and_are_refused_when_the_queue_is_full(
    encoder: Encoder,
) -> None:
    assert encoder.pools_regions
    gated = GatedPooling(encoder)
    seen: list[BatchStats] = []
    batching = BatchingEncoder(
        gated, BatchingConfig(max_batch=4, queue_size=2), on_batch=seen.append
    ).start()
    image = photos(1)[0]
    boxes = [(0, 0, 256, 256), (128, 128, 512, 512)]
    tensor = encoder.preprocess(image)
    results: list[np.ndarray] = []
    try:
        busy = batching.submit([tensor])
        assert gated.entered.wait(timeout=30)
        caller = threading.Thread(
            target=lambda: results.append(batching.encode_regions(image, boxes))
        )
        caller.start()
        with batching._ready:  # the caller's job is queued before the next photo
            assert batching._ready.wait_for(lambda: batching.queue_depth == 1, timeout=30)
        behind = batching.submit([tensor])
        # The pooled photo waits in the queue (one place) like any photo: a third is refused.
        assert batching.queue_depth == 2
        with pytest.raises(Overloaded):
            batching.encode_regions(image, boxes)
        gated.gate.set()
        caller.join(timeout=30)
        for future in busy + behind:
            future.result(timeout=30)
    finally:
        gated.gate.set()
        batching.stop()
    # In queue order: the first batch, the pooled pass alone, then the photo queued after it.
    assert gated.batches == [1, -1, 1]
    assert [s.size for s in seen] == [1, 1, 1]
    assert np.allclose(results[0], encoder.encode_regions(image, boxes), atol=1e-5)
    # The photo was squeezed in its caller's thread; only the pass ran on the worker.
    assert gated.threads == [(caller.name, "rapport-encoder")]


def test_the_pooled_photos_of_one_call_are_queued_all_or_none(encoder: Encoder) -> None:
    gated = GatedPooling(encoder)
    batching = BatchingEncoder(gated, BatchingConfig(queue_size=2)).start()
    image = photos(1)[0]
    boxes = [(0, 0, 256, 256)]
    try:
        busy = batching.submit([encoder.preprocess(image)])
        assert gated.entered.wait(timeout=30)
        # Three photos for a queue of two: refused whole, not two of them queued.
        with pytest.raises(Overloaded):
            batching.encode_regions_of([(image, boxes)] * 3)
        assert batching.queue_depth == 0
        gated.gate.set()
        busy[0].result(timeout=30)
        vectors = batching.encode_regions_of([(image, boxes)] * 2)
    finally:
        gated.gate.set()
        batching.stop()
    assert [v.shape for v in vectors] == [(2, encoder.dim)] * 2
    assert gated.batches == [1, -1, -1]


def test_owners_take_turns_and_one_owner_cannot_fill_the_queue(encoder: Encoder) -> None:
    gated = GatedEncoder(encoder)
    batching = BatchingEncoder(
        gated, BatchingConfig(max_batch=2, queue_size=10, max_per_owner=6)
    ).start()
    images = photos(6)
    tensors = [encoder.preprocess(image) for image in images]
    finished: list[str] = []  # in the order the worker completes them

    def watch(futures: list[Future[np.ndarray]], name: str) -> None:
        def done(tag: str) -> Callable[[Future[np.ndarray]], None]:
            return lambda _: finished.append(tag)

        for i, future in enumerate(futures):
            future.add_done_callback(done(f"{name}{i}"))

    try:
        with encoding_for("big-app"):
            watch(batching.submit(tensors[:1]), "busy")
            assert gated.entered.wait(timeout=30)
            big = batching.submit(tensors)
            watch(big, "big")
            # Its share is full; the queue is not.
            with pytest.raises(Overloaded, match="this app"):
                batching.submit(tensors[:1])
        with encoding_for("small-app"):
            small = batching.submit(tensors[5:6])
            watch(small, "small")
        assert batching.queue_depth == 7
        gated.gate.set()
        vector = small[0].result(timeout=30)
        for future in big:
            future.result(timeout=30)
    finally:
        gated.gate.set()
        batching.stop()
    # First come first served would encode small-app's photo last, after all six of
    # big-app's; in turns it shares the first pass after the busy one.
    assert gated.batches == [1, 2, 2, 2, 1]
    assert finished[:3] == ["busy0", "big0", "small0"], finished
    assert np.allclose(vector, encoder.encode_images(images[5:6])[0], atol=1e-5)


def test_a_full_queue_refuses_before_any_photo_is_resized(encoder: Encoder) -> None:
    resized: list[int] = []

    class Counting(GatedPooling):
        def preprocess(self, image: Image.Image) -> torch.Tensor:
            resized.append(1)
            return self.inner.preprocess(image)

        def prepare_regions(
            self, image: Image.Image, boxes: Sequence[Box], side: int = 320
        ) -> Callable[[], np.ndarray]:
            resized.append(1)
            return super().prepare_regions(image, boxes, side)

    gated = Counting(encoder)
    batching = BatchingEncoder(gated, BatchingConfig(max_batch=1, queue_size=1)).start()
    image = photos(1)[0]
    try:
        busy = batching.submit([encoder.preprocess(image)])
        assert gated.entered.wait(timeout=30)
        waiting = batching.submit([encoder.preprocess(image)])  # the queue is full now
        with pytest.raises(Overloaded):
            batching.encode_images([image, image])
        with pytest.raises(Overloaded):
            batching.encode_regions_of([(image, [(0, 0, 64, 64)])])
        assert resized == []
        gated.gate.set()
        for future in busy + waiting:
            future.result(timeout=30)
    finally:
        gated.gate.set()
        batching.stop()


def test_encode_all_waits_for_room_where_encode_images_refuses(encoder: Encoder) -> None:
    # Offline work (reindex, the background photos) once had to split itself by the queue's
    # size; encode_all queues a share at a time and waits, request paths still get 429.
    batching = BatchingEncoder(encoder, BatchingConfig(queue_size=3, max_per_owner=2)).start()
    try:
        images = photos(7)
        with pytest.raises(Overloaded):
            batching.encode_images(images)
        vectors = batching.encode_all(images)
        assert np.allclose(vectors, encoder.encode_images(images), atol=1e-5)
        assert batching.encode_all([]).shape == (0, encoder.dim)
    finally:
        batching.stop()

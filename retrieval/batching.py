"""Micro-batching: photos of many concurrent requests share one forward pass.

Callers preprocess their photos in their own threads (decode, resize and
normalise overlap the device's work), then queue one tensor per photo; a single
worker thread takes up to ``max_batch`` of them, runs one forward pass and
completes each caller's future. It waits for more (at most ``max_wait_ms``
after the first) only while other callers are still preprocessing, so a lone
request pays no batching delay. A full queue refuses new work (Overloaded)
instead of growing without bound.

A photo whose regions are pooled from one pass of its own (``encode_regions``
with an encoder that pools) queues as one job that the worker runs alone, in
turn with the batches: it takes one place in the queue, is refused like any
other work when the queue is full, and runs on the worker's threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import torch
from PIL import Image

from retrieval.config import BatchingConfig
from retrieval.errors import Overloaded
from retrieval.image_encoder import ImageEncoder
from retrieval.regions import Box

# A queued photo: its preprocessed tensor (batched with others), or a pass of its own.
Job: TypeAlias = torch.Tensor | Callable[[], np.ndarray]


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass did: for metrics."""

    size: int
    seconds: float
    queue_depth: int


class BatchingEncoder:
    """An ``ImageEncoder`` whose calls are batched across threads into the wrapped one's
    forward passes.

    ``start()`` it before use and ``stop()`` it at shutdown; ``on_batch`` is
    called from the worker after every forward pass.
    """

    def __init__(
        self,
        encoder: ImageEncoder,
        config: BatchingConfig = BatchingConfig(),
        *,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.encoder = encoder
        self.config = config
        self._on_batch = on_batch
        self._queue: deque[tuple[Job, Future[np.ndarray]]] = deque()
        self._ready = threading.Condition()
        self._running = False
        self._preparing = 0  # callers between encode_images() and their submit
        self._worker: threading.Thread | None = None

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    @property
    def pools_regions(self) -> bool:
        return self.encoder.pools_regions

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.encoder.preprocess(image)

    def encode_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> np.ndarray:
        """The whole photo's vector then each box's, pooled from one forward pass when the
        encoder can (``encode_regions``, queued as one job the worker runs alone), else
        from crops through the batching queue."""
        if self.encoder.pools_regions:
            encoder = self.encoder
            (future,) = self.submit([lambda: encoder.encode_regions(image, boxes, side)])
            return future.result()
        return self.encode_images([image, *(image.crop(box) for box in boxes)])

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def start(self) -> BatchingEncoder:
        with self._ready:
            if self._running:
                return self
            self._running = True
        self._worker = threading.Thread(target=self._run, name="rapport-encoder", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._ready:
            self._running = False
            self._ready.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors for RGB photos, in order (blocks; preprocessing runs in this thread)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._ready:
            self._preparing += 1
        try:
            tensors = [self.encoder.preprocess(image) for image in images]
        except BaseException:
            with self._ready:
                self._preparing -= 1
                self._ready.notify()
            raise
        futures = self.submit(tensors, prepared=True)
        return np.stack([future.result() for future in futures])

    def submit(self, jobs: Sequence[Job], *, prepared: bool = False) -> list[Future[np.ndarray]]:
        """Queue preprocessed photos (or passes of their own); all or none are queued
        (Overloaded when full).

        ``prepared``: the caller announced itself in ``encode_images``.
        """
        futures: list[Future[np.ndarray]] = [Future() for _ in jobs]
        with self._ready:
            if prepared:
                self._preparing -= 1
                self._ready.notify()
            if not self._running:
                raise Overloaded("the encoder is not running")
            if len(self._queue) + len(jobs) > self.config.queue_size:
                raise Overloaded("too many photos are waiting to be encoded; retry shortly")
            self._queue.extend(zip(jobs, futures, strict=True))
            self._ready.notify()
        return futures

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Vectors for preprocessed photos, in order, through the queue (blocks)."""
        if not tensors:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([future.result() for future in self.submit(tensors)])

    def _next_batch(self) -> list[tuple[Job, Future[np.ndarray]]]:
        """The tensors at the head of the queue (at most ``max_batch``), or the job of a
        pass of its own when it is first."""
        with self._ready:
            while not self._queue and self._running:
                self._ready.wait()
            if not self._queue:
                return []
            if not isinstance(self._queue[0][0], torch.Tensor):
                return [self._queue.popleft()]
            deadline = time.monotonic() + self.config.max_wait_ms / 1000
            while self._batchable() < self.config.max_batch and self._preparing and self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            return [self._queue.popleft() for _ in range(self._batchable())]

    def _batchable(self) -> int:
        """How many tensors lead the queue, up to ``max_batch`` (under ``_ready``)."""
        count = 0
        for job, _ in self._queue:
            if count == self.config.max_batch or not isinstance(job, torch.Tensor):
                break
            count += 1
        return count

    def _encode(self, jobs: list[Job]) -> list[np.ndarray] | np.ndarray:
        """One forward pass: a batch of tensors, or one job's own pass."""
        first = jobs[0]
        if not isinstance(first, torch.Tensor):
            return [first()]
        return self.encoder.encode_tensors([job for job in jobs if isinstance(job, torch.Tensor)])

    def _run(self) -> None:
        if self.config.torch_threads:
            # Per thread: OpenMP's thread count belongs to the thread that starts the work.
            torch.set_num_threads(self.config.torch_threads)
        while True:
            batch = self._next_batch()
            if not batch:
                return
            started = time.perf_counter()
            try:
                vectors = self._encode([job for job, _ in batch])
            except BaseException as error:
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)
            if self._on_batch is not None:
                elapsed = time.perf_counter() - started
                self._on_batch(BatchStats(len(batch), elapsed, len(self._queue)))

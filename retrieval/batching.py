"""Micro-batching: photos of many concurrent requests share one forward pass.

Callers preprocess their photos in their own threads (decode, resize and
normalise overlap the device's work), then queue one tensor per photo; a single
worker thread takes up to ``max_batch`` of them, runs one forward pass and
completes each caller's future. It waits for more (at most ``max_wait_ms``
after the first) only while other callers are still preprocessing, so a lone
request pays no batching delay. A full queue refuses new work (Overloaded)
instead of growing without bound.

The queue is fair between owners (the service's apps): each caller's photos
queue under the owner ``encoding_for`` names in its context (None outside
one), no owner may hold more than ``max_per_owner`` places, and each forward
pass takes the owners' photos in turn, one each per round, so one app's large
request cannot make another app's photo wait behind all of it.

A photo whose regions are pooled from one pass of its own (``encode_regions``
with an encoder that pools) queues as one job that the worker runs alone, in
turn with the batches: it takes one place in the queue, is refused like any
other work when the queue is full, and runs on the worker's threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
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


_owner: ContextVar[Hashable | None] = ContextVar("rapport_encoding_owner", default=None)


@contextmanager
def encoding_for(owner: Hashable | None) -> Iterator[None]:
    """Queue the photos this context encodes under ``owner`` (the service: an app's id),
    for fairness between owners; threads started with a copy of the context (as
    Starlette's thread pool does) inherit it."""
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


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
        # Each owner's photos in order; owners in the order the next pass serves them.
        self._queues: OrderedDict[Hashable | None, deque[tuple[Job, Future[np.ndarray]]]] = (
            OrderedDict()
        )
        self._depth = 0
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
        """The whole photo's vector then each box's (``encode_regions_of``)."""
        return self.encode_regions_of([(image, boxes)], side)[0]

    def prepare_regions(
        self, image: Image.Image, boxes: Sequence[Box], side: int = 320
    ) -> Callable[[], np.ndarray]:
        """Nothing is prepared ahead here: the returned function prepares the photo,
        queues it and waits (``encode_regions``), so that the queue's bound is checked
        before the work."""
        return lambda: self.encode_regions(image, boxes, side)

    def encode_regions_of(
        self, photos: Sequence[tuple[Image.Image, Sequence[Box]]], side: int = 320
    ) -> list[np.ndarray]:
        """Each photo's whole vector then its boxes': pooled from one forward pass per
        photo when the encoder can (each photo prepared in this thread, then queued as
        one job the worker runs alone, all of them or none), else from crops through
        the batching queue."""
        if not self.encoder.pools_regions:
            parts = [[image, *(image.crop(box) for box in boxes)] for image, boxes in photos]
            vectors = self.encode_images([part for photo in parts for part in photo])
            ends = np.cumsum([len(photo) for photo in parts])[:-1]
            return list(np.split(vectors, ends))
        with self._ready:
            self._check_room(len(photos))  # before any photo is squeezed
        runs = [self.encoder.prepare_regions(image, boxes, side) for image, boxes in photos]
        return [future.result() for future in self.submit(runs)]

    @property
    def queue_depth(self) -> int:
        return self._depth

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
            self._check_room(len(images))  # before any photo is resized
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

    def encode_all(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Vectors for any number of photos, in order, for offline work (reindex, import,
        the decision rule's background photos): queued a share of the queue at a time,
        each share waiting for room instead of being refused, so callers need not split
        their work by the queue's size. Request paths use ``encode_images``, which
        refuses at once (429) when there is no room."""
        share = min(self.config.queue_size, self.config.max_per_owner or self.config.queue_size)
        parts = []
        for start in range(0, len(images), share):
            chunk = images[start : start + share]
            while True:
                with self._ready:
                    while self._running and not self._has_room(len(chunk)):
                        self._ready.wait()
                try:
                    parts.append(self.encode_images(chunk))
                    break
                except Overloaded:
                    if not self._running:
                        raise
                    # Another caller took the room first: wait for the worker again.
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(parts)

    def submit(self, jobs: Sequence[Job], *, prepared: bool = False) -> list[Future[np.ndarray]]:
        """Queue preprocessed photos (or passes of their own) under the context's owner
        (``encoding_for``); all or none are queued (Overloaded when the queue, or the
        owner's share of it, is full).

        ``prepared``: the caller announced itself in ``encode_images``.
        """
        futures: list[Future[np.ndarray]] = [Future() for _ in jobs]
        owner = _owner.get()
        with self._ready:
            if prepared:
                self._preparing -= 1
                self._ready.notify()
            self._check_room(len(jobs))
            queue = self._queues.get(owner)
            if queue is None:
                queue = self._queues[owner] = deque()
            queue.extend(zip(jobs, futures, strict=True))
            self._depth += len(jobs)
            self._ready.notify()
        return futures

    def _check_room(self, count: int) -> None:
        """Overloaded unless ``count`` more photos of the context's owner fit the queue
        and the owner's share of it now (under ``_ready``)."""
        if not self._running:
            raise Overloaded("the encoder is not running")
        if self._depth + count > self.config.queue_size:
            raise Overloaded("too many photos are waiting to be encoded; retry shortly")
        if not self._has_room(count):
            raise Overloaded(
                "too many of this app's photos are waiting to be encoded; retry shortly"
            )

    def _has_room(self, count: int) -> bool:
        """Whether ``count`` more photos of the context's owner fit now (under ``_ready``)."""
        if self._depth + count > self.config.queue_size:
            return False
        queue = self._queues.get(_owner.get())
        held = len(queue) if queue is not None else 0
        limit = self.config.max_per_owner
        return limit is None or held + count <= limit

    def encode_tensors(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Vectors for preprocessed photos, in order, through the queue (blocks)."""
        if not tensors:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([future.result() for future in self.submit(tensors)])

    def _next_batch(self) -> list[tuple[Job, Future[np.ndarray]]]:
        """The next pass's photos, the owners' in turn (at most ``max_batch``), or the job
        of a pass of its own when it is the next owner's first."""
        with self._ready:
            while not self._depth and self._running:
                self._ready.wait()
            if not self._depth:
                return []
            first_owner, first = next(iter(self._queues.items()))
            if not isinstance(first[0][0], torch.Tensor):
                return [self._take(first_owner)]
            deadline = time.monotonic() + self.config.max_wait_ms / 1000
            while self._batchable() < self.config.max_batch and self._preparing and self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            batch: list[tuple[Job, Future[np.ndarray]]] = []
            while len(batch) < self.config.max_batch:
                owners = [
                    owner
                    for owner, queue in self._queues.items()
                    if isinstance(queue[0][0], torch.Tensor)
                ]
                if not owners:
                    break
                for owner in owners[: self.config.max_batch - len(batch)]:
                    batch.append(self._take(owner))
            return batch

    def _take(self, owner: Hashable | None) -> tuple[Job, Future[np.ndarray]]:
        """The first photo of ``owner``, whose turn then passes to the next owner."""
        queue = self._queues.pop(owner)
        taken = queue.popleft()
        if queue:
            self._queues[owner] = queue  # to the back of the turn
        self._depth -= 1
        self._ready.notify_all()  # room for a caller waiting in encode_all
        return taken

    def _batchable(self) -> int:
        """How many tensors the next pass could take, up to ``max_batch`` (under
        ``_ready``): each owner's leading tensors."""
        count = 0
        for queue in self._queues.values():
            for job, _ in queue:
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
                self._on_batch(BatchStats(len(batch), elapsed, self._depth))

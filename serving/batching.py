"""Server-side batching: concurrent requests to one signature run as one call.

A `Batcher` is a `service.Runner`. Requests queue per (servable, signature, input dtypes and
shapes after dimension 0); `num_batch_threads` workers each take up to `max_batch_size` rows
from a queue once it holds that many or its oldest request has waited `batch_timeout_micros`,
concatenate them along dimension 0 (padded up to the next `allowed_batch_sizes` entry by
repeating a row), run once, and hand each request its slice of the outputs. Beyond
`max_enqueued_batches` full batches a queue answers UNAVAILABLE.

Run unbatched: signatures where any input or output lacks an open dimension 0 (scalars, the
`metadata` signature), requests whose inputs disagree on dimension 0, and requests of
`max_batch_size` rows or more. Requests of different shapes are not padded together
(`pad_variable_length_inputs` is read but not implemented). If a merged batch fails, its
requests are re-run one by one, so one bad request fails alone.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time

import grpc
import numpy as np

from serving.config import BatchingOptions
from serving.validation import RequestError

log = logging.getLogger("serving")


@dataclasses.dataclass(eq=False)
class _Task:
    arrays: dict
    rows: int
    enqueued: float = dataclasses.field(default_factory=time.monotonic)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: dict | None = None
    error: BaseException | None = None


class Batcher:
    """Merges concurrent requests along dimension 0; call it like `servable.run`."""

    def __init__(self, options: BatchingOptions):
        self.options = options
        if options.pad_variable_length_inputs:
            log.warning("batching: pad_variable_length_inputs is not implemented; only "
                        "requests with equal shapes are batched together")
        self._queues: dict[tuple, collections.deque] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self.stats = collections.Counter()  # "batches" run and "requests" in them
        self._workers = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for worker in self._workers:
            worker.start()

    def __call__(self, servable, spec, arrays: dict) -> dict:
        rows = {a.shape[0] for a in arrays.values()} if spec.batched() else set()
        if len(rows) != 1 or rows.pop() >= self.options.max_batch_size:
            return servable.run(spec.name, arrays)
        task = _Task(arrays, next(iter(arrays.values())).shape[0])
        key = (servable, spec.name) + tuple(
            (k, a.dtype.str, a.shape[1:]) for k, a in sorted(arrays.items()))
        with self._cond:
            if self._stopped:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
            queue = self._queues.setdefault(key, collections.deque())
            limit = self.options.max_enqueued_batches * self.options.max_batch_size
            if sum(t.rows for t in queue) + task.rows > limit:
                raise RequestError(grpc.StatusCode.UNAVAILABLE,
                                   f"the batch queue of signature '{spec.name}' is full")
            queue.append(task)
            self._cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def stop(self) -> None:
        """Runs what is queued, then ends the workers."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join()

    # --- workers ---

    def _work(self) -> None:
        while True:
            with self._cond:
                picked = self._next_batch()
            if picked is None:
                return
            self._execute(*picked)

    def _next_batch(self):
        """Waits (holding the condition) for a queue that is full or timed out."""
        timeout = self.options.batch_timeout_micros / 1e6
        while True:
            now, wait = time.monotonic(), None
            for key, queue in list(self._queues.items()):
                if not queue:
                    del self._queues[key]
                    continue
                deadline = queue[0].enqueued + timeout
                if (self._stopped or now >= deadline
                        or sum(t.rows for t in queue) >= self.options.max_batch_size):
                    return key, self._take(queue)
                wait = deadline - now if wait is None else min(wait, deadline - now)
            if self._stopped:
                return None
            self._cond.wait(wait)

    def _take(self, queue) -> list[_Task]:
        tasks, rows = [], 0
        while queue and rows + queue[0].rows <= self.options.max_batch_size:
            tasks.append(queue.popleft())
            rows += tasks[-1].rows
        return tasks

    def _execute(self, key: tuple, tasks: list[_Task]) -> None:
        servable, signature = key[0], key[1]
        try:
            if len(tasks) > 1 or self.options.allowed_batch_sizes:
                try:
                    return self._run_merged(servable, signature, tasks)
                except Exception as e:  # noqa: BLE001 - isolate the request that broke it
                    log.info("batching: a batch of %s failed (%s); running its requests "
                             "one by one", signature, e)
            for task in tasks:
                try:
                    task.result = servable.run(signature, task.arrays)
                except Exception as e:  # noqa: BLE001 - handed to the waiting request
                    task.error = e
        finally:
            for task in tasks:
                task.done.set()

    def _run_merged(self, servable, signature: str, tasks: list[_Task]) -> None:
        with self._cond:
            self.stats.update(batches=1, requests=len(tasks))
        rows = sum(t.rows for t in tasks)
        size = next((s for s in self.options.allowed_batch_sizes if s >= rows), rows)
        merged = {}
        for name in tasks[0].arrays:
            parts = [t.arrays[name] for t in tasks]
            if size > rows:  # pad with copies of a real row so the model sees valid input
                parts.append(np.repeat(parts[-1][-1:], size - rows, axis=0))
            merged[name] = np.concatenate(parts, axis=0)
        outputs = servable.run(signature, merged)
        if any(v.ndim == 0 or v.shape[0] != size for v in outputs.values()):
            raise ValueError(f"signature '{signature}' outputs do not follow dimension 0")
        start = 0
        for task in tasks:
            task.result = {k: v[start:start + task.rows] for k, v in outputs.items()}
            start += task.rows

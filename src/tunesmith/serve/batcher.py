"""One thread runs every model; requests that arrive together for the same model are decoded as one batch.

The first request of a batch waits `batch_window_s` for company; then every queued request for the same loaded
weights and adapter joins it, up to `max_batch` answers. Requests for other models wait for the next round, in
arrival order. Running all model work on one thread keeps the CPU's cores for one matmul at a time instead of
several half-speed ones, and lets peft switch adapters between batches without locks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tunesmith.serve.catalog import ModelEntry
from tunesmith.serve.decode import Sequence, decode
from tunesmith.serve.engines import Engines, Profile


@dataclass
class Generation:
    profile: Profile
    sequences: list[Sequence]
    done: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        return ("generate", self.profile.weights, self.profile.adapter)

    @property
    def size(self) -> int:
        return len(self.sequences)


@dataclass
class Classification:
    entry: ModelEntry
    texts: list[str]
    done: Future = field(default_factory=Future)  # result: (list of eval.predict.Prediction, input tokens)

    @property
    def key(self) -> tuple:
        return ("classify", self.entry.id)

    @property
    def size(self) -> int:
        return 1  # a head classifies a whole list in its own batches


Work = Generation | Classification


class Batcher:
    def __init__(self, engines: Engines, max_batch: int = 8, window_s: float = 0.01):
        self.engines = engines
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[Work | None] = queue.Queue()
        self._pending: deque[Work] = deque()
        self._thread = threading.Thread(target=self._run, name="tunesmith-batcher", daemon=True)
        self.batches = 0  # counters for tests and the benchmark
        self.batched_requests = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, work: Work) -> Future:
        self._queue.put(work)
        return work.done

    # --- the model thread ------------------------------------------------------------------------------------

    def _gather(self) -> bool:
        """Move arrivals into the pending list; wait for the first one, then for the batch window. False: stop."""
        if not self._pending:
            item = self._queue.get()
            if item is None:
                return False
            self._pending.append(item)
            deadline = time.monotonic() + self.window_s
        else:
            deadline = time.monotonic()
        while sum(w.size for w in self._pending) < self.max_batch * 4:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return False
            self._pending.append(item)
        return True

    def _next_group(self) -> list[Work]:
        first = self._pending.popleft()
        group, rows = [first], first.size
        for work in list(self._pending):
            if work.key == first.key and rows + work.size <= self.max_batch:
                group.append(work)
                rows += work.size
                self._pending.remove(work)
        return group

    def _run(self) -> None:
        while self._gather():
            group = self._next_group()
            group = [w for w in group if w.done.set_running_or_notify_cancel()]
            if not group:
                continue
            self.batches += 1
            self.batched_requests += len(group)
            try:
                results = self._execute(group)
            except Exception as err:  # a failure answers the requests of this batch, never the server
                for work in group:
                    work.done.set_exception(err)
                continue
            for work, result in zip(group, results, strict=True):
                work.done.set_result(result)

    def _execute(self, group: list[Work]) -> list[Any]:
        first = group[0]
        if isinstance(first, Classification):
            head = self.engines.head(first.entry)
            texts = [t for w in group for t in w.texts]  # type: ignore[union-attr]
            predictions = head.predict(texts)
            out, start = [], 0
            for work in group:
                mine = work.texts  # type: ignore[union-attr]
                tokens = sum(len(head.encode(t)) for t in mine)
                out.append((predictions[start : start + len(mine)], tokens))
                start += len(mine)
            return out
        profile = first.profile
        sequences = [s for w in group for s in w.sequences]  # type: ignore[union-attr]
        with self.engines.activate(profile) as model:
            pad = profile.tokenizer.pad_token_id
            decode(model, profile.tokenizer, sequences, profile.stop_ids, pad, self.engines.device)
        return [None] * len(group)

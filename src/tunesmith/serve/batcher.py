"""One thread runs every model; requests that arrive together for the same model are decoded as one batch.

The first request of a batch waits `batch_window_s` for company; then the queued requests for the same loaded
weights and adapter share a batch of at most `max_batch` rows (answers, or texts to classify). A request with more
rows than that (64 prompts x n 16) is served in parts, one batch at a time, and shares each batch row by row with
the requests waiting beside it, so a small request waits for at most the batch in flight. Requests for other models
take the next round, in arrival order. Running all model work on one thread keeps the CPU's cores for one matmul at
a time instead of several half-speed ones, and lets peft switch adapters between batches without locks.

One request never fails another: a row whose own sampling fails ends that request alone (decode.py), and when a
whole batch fails, each of its requests is run again alone, so only the one that causes the failure gets it.
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


@dataclass(eq=False)
class Generation:
    profile: Profile
    sequences: list[Sequence]
    done: Future = field(default_factory=Future)  # result: None (the answers are written into the sequences)
    taken: int = 0  # rows handed to batches so far
    open_parts: int = 0  # parts handed to a batch and not yet settled

    @property
    def key(self) -> tuple:
        return ("generate", self.profile.weights, self.profile.adapter)

    @property
    def items(self) -> list[Sequence]:
        return self.sequences

    def result(self) -> None:
        return None


@dataclass(eq=False)
class Classification:
    entry: ModelEntry
    texts: list[str]
    done: Future = field(default_factory=Future)  # result: (list of eval.predict.Prediction, input tokens)
    taken: int = 0
    open_parts: int = 0
    predictions: list[Any] = field(default_factory=list)
    tokens: int = 0

    def __post_init__(self) -> None:
        self.predictions = [None] * len(self.texts)

    @property
    def key(self) -> tuple:
        return ("classify", self.entry.id)

    @property
    def items(self) -> list[str]:
        return self.texts

    def result(self) -> tuple[list[Any], int]:
        return self.predictions, self.tokens


@dataclass(eq=False)
class Scoring(Classification):
    """Answers scored by a reward-model run: `texts` holds (prompt, answer) pairs; the result is (scores, tokens)."""

    @property
    def key(self) -> tuple:
        return ("score", self.entry.id)


Work = Generation | Classification


@dataclass
class Part:
    """Rows start..stop of one request, decoded in one batch."""

    work: Work
    start: int
    stop: int
    answer: tuple[list[Any], int] | None = None  # a classification part's predictions and input tokens

    @property
    def items(self) -> list:
        return self.work.items[self.start : self.stop]


class Batcher:
    def __init__(self, engines: Engines, max_batch: int = 8, window_s: float = 0.01):
        self.engines = engines
        self.max_batch = max(1, max_batch)
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
        if not work.items:
            work.done.set_result(work.result())
            return work.done
        self._queue.put(work)
        return work.done

    # --- the model thread ------------------------------------------------------------------------------------

    def _waiting_rows(self) -> int:
        return sum(len(w.items) - w.taken for w in self._pending)

    def _gather(self) -> bool:
        """Move arrivals into the pending list: wait for the first one, then for the batch window or a full batch,
        then take whatever else has arrived. False: stop."""
        if not self._pending:
            item = self._queue.get()
            if item is None:
                return False
            self._pending.append(item)
            deadline = time.monotonic() + self.window_s
        else:
            deadline = time.monotonic()
        while True:
            wait = deadline - time.monotonic() if self._waiting_rows() < self.max_batch else 0.0
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                return True
            if item is None:
                return False
            self._pending.append(item)

    def _next_group(self) -> list[Part]:
        """The next batch: the first pending request's model, its rows shared out one at a time among the pending
        requests for that model until max_batch. A request with rows left goes behind the others."""
        for work in [w for w in self._pending if w.done.done()]:
            self._pending.remove(work)  # cancelled by its client before it started, or failed in an earlier part
        if not self._pending:
            return []
        key = self._pending[0].key
        takers = [w for w in self._pending if w.key == key]
        share = dict.fromkeys(takers, 0)
        rows = 0
        while rows < self.max_batch:
            before = rows
            for work in takers:
                if rows < self.max_batch and work.taken + share[work] < len(work.items):
                    share[work] += 1
                    rows += 1
            if rows == before:
                break
        parts, again = [], []
        for work in takers:
            if share[work] == 0:
                continue
            if work.taken == 0 and not work.done.set_running_or_notify_cancel():
                self._pending.remove(work)
                continue
            parts.append(Part(work, work.taken, work.taken + share[work]))
            work.taken += share[work]
            work.open_parts += 1
            self._pending.remove(work)
            if work.taken < len(work.items):
                again.append(work)
        self._pending.extend(again)
        return parts

    def _run(self) -> None:
        while self._gather():
            parts = self._next_group()
            if not parts:
                continue
            try:
                self._execute(parts)
            except Exception as err:  # a failure answers requests, never stops the server
                if len(parts) == 1:
                    self._settle(parts[0], err)
                    continue
                # Any one of them may have caused it: each runs again alone, and only the culprit fails.
                for part in parts:
                    self._alone(part)
                continue
            for part in parts:
                self._settle(part)

    def _alone(self, part: Part) -> None:
        if isinstance(part.work, Generation):
            for seq in part.items:
                seq.restart()
        try:
            self._execute([part])
        except Exception as err:
            self._settle(part, err)
            return
        self._settle(part)

    def _settle(self, part: Part, error: Exception | None = None) -> None:
        """Record a finished part; answer its request when this was its last part or when it failed."""
        work = part.work
        work.open_parts -= 1
        if work.done.done():
            return  # an earlier part already failed it
        if error is None and isinstance(work, Generation):
            error = next((s.error for s in part.items if s.error is not None), None)
        if error is not None:
            work.done.set_exception(error)
            return
        if isinstance(work, Classification) and part.answer is not None:
            work.predictions[part.start : part.stop] = part.answer[0]
            work.tokens += part.answer[1]
        if work.taken == len(work.items) and work.open_parts == 0:
            work.done.set_result(work.result())

    def _execute(self, parts: list[Part]) -> None:
        self.batches += 1
        self.batched_requests += len(parts)
        first = parts[0].work
        if isinstance(first, Scoring):
            scorer = self.engines.reward(first.entry)
            pairs = [item for p in parts for item in p.items]
            scores = scorer.score([q for q, _ in pairs], [a for _, a in pairs])
            start = 0
            for part in parts:
                mine = part.items
                part.answer = (scores[start : start + len(mine)], sum(len(scorer.ids(q, a)) for q, a in mine))
                start += len(mine)
            return
        if isinstance(first, Classification):
            head = self.engines.head(first.entry)
            predictions = head.predict([t for p in parts for t in p.items])
            start = 0
            for part in parts:
                mine = part.items
                part.answer = (predictions[start : start + len(mine)], sum(len(head.encode(t)) for t in mine))
                start += len(mine)
            return
        profile = first.profile
        sequences = [s for p in parts for s in p.items]
        with self.engines.activate(profile) as model:
            decode(model, profile.tokenizer, sequences, profile.stop_ids, profile.tokenizer.pad_token_id,
                   self.engines.device)  # fmt: skip

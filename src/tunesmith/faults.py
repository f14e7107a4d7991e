"""Fault injection at named points of a run, for the interruption tests (tests/unit/test_interrupts.py).

    TUNESMITH_FAULT="checkpoint:optimizer#2=SIGINT" tunesmith train cfg.yaml

stops the run the 2nd time it reaches the point `checkpoint:optimizer` by sending itself SIGINT (as Ctrl-C would).
The form is `POINT[#N][=ACTION]`: N defaults to 1; ACTION is SIGKILL (the default), SIGINT or ENOSPC (raises
"No space left on device" as a full disk would). Unset, `fault()` is one dictionary lookup. The points are listed
where `fault()` is called: setup, audit, config, manifest, eval, metrics, checkpoint:*, final:*, tuned, card.
Under torchrun, TUNESMITH_FAULT_RANK=R limits it to rank R (a rank that dies mid-run).
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter

ENV = "TUNESMITH_FAULT"
RANK_ENV = "TUNESMITH_FAULT_RANK"  # under torchrun: only this rank stops (unset: every rank that reaches the point)
_hits: Counter[str] = Counter()
_counting: list[str] = [""]  # the spec the hits count for: a new one (the next in-process test) starts from zero


def fault(point: str, path: object = None) -> None:
    """Stop here if TUNESMITH_FAULT names this point and this is its N-th hit; `path` names the file for ENOSPC."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    if os.environ.get(RANK_ENV, os.environ.get("RANK", "0")) != os.environ.get("RANK", "0"):
        return  # a data-parallel run: the fault is meant for another rank
    target, _, action = spec.partition("=")
    name, _, nth = target.partition("#")
    if name != point:
        return
    if _counting[0] != spec:
        _hits.clear()
        _counting[0] = spec
    _hits[point] += 1
    if _hits[point] != int(nth or 1):
        return
    if action == "ENOSPC":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))
    os.kill(os.getpid(), signal.SIGINT if action == "SIGINT" else signal.SIGKILL)

"""`tunesmith train CONFIG --ranks N`: data-parallel on one machine, started by PyTorch's own launcher.

    tunesmith train examples/gsm8k-full.yaml train.distributed=fsdp --ranks 4

The same as `torchrun --standalone --nproc-per-node N -m tunesmith.cli train CONFIG` (torch's elastic agent, a
rendezvous on a free local port, no restarts), with the launcher's report of a failed rank turned into one line: a
rank that said why it stopped (an `error:` line, exit 2) is left to say it; one that died (a signal, an internal
error) is named with how it ended, and the run is left to `--resume`. Several machines: torchrun itself, see
README.md.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid

from tunesmith.config import Config
from tunesmith.training.distributed import check_split

EXIT_INTERRUPTED = 130


def launch(ranks: int, cfg: Config, train_args: list[str], resume: bool) -> int:
    """Run `tunesmith train TRAIN_ARGS` on `ranks` local processes; the exit code the CLI returns."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    check_split(cfg.train.batch_size, cfg.train.micro_batch_size, ranks)  # refused before any process starts
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failure log: said below, once
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // ranks)))
    # The launcher keeps each rank's error file in a folder of its own; left to itself it makes one in the temp
    # directory per launch and never removes it. This one is made here and removed when the launch ends.
    scratch = tempfile.TemporaryDirectory(prefix="tunesmith-ranks-")
    config = LaunchConfig(
        logs_specs=DefaultLogsSpecs(log_dir=scratch.name),
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,  # a failed rank ends the run; --resume continues it from its last checkpoint
        monitor_interval=0.1,
    )
    command = ["-m", "tunesmith.cli", "train", *train_args, *(["--resume"] if resume else [])]
    try:
        with scratch:
            elastic_launch(config, sys.executable)(*command)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode in (2, 70):  # the rank said why, in one line (and a crash log for 70)
            return failure.exitcode
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        print(
            f"error: rank {rank} of {ranks} stopped ({how}); the others were stopped with it. The run keeps its "
            f"checkpoints: continue it with `tunesmith train {' '.join(train_args)} --ranks {ranks} --resume`",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return 0

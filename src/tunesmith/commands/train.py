"""tunesmith train | plan | verify | eval | select | sweep | quickstart: the verbs that run a job from a config."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tunesmith.argtypes import POSITIVE, positive_float
from tunesmith.commands import KINDS
from tunesmith.config import SPEED_OPTIONS


def _trains() -> None:
    """This process trains: freed activations stay with malloc for the next micro-batch, and oneDNN's kernel cache
    is bounded (training/memory.py)."""
    from tunesmith.training.memory import bound_kernel_cache, keep_freed_memory

    keep_freed_memory()
    bound_kernel_cache()


def _train(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config

    cfg = load_config(args.config, args.overrides)  # before torch is imported: a bad config fails in a second
    if args.ranks > 1 and "WORLD_SIZE" not in os.environ:
        from tunesmith.training.launch import launch

        return launch(args.ranks, cfg, [args.config, *args.overrides], args.resume)
    _trains()
    from tunesmith.recipes.summary import print_result
    from tunesmith.recipes.train import run_training

    result = run_training(cfg, resume=args.resume, config_path=Path(args.config))
    from tunesmith.training.distributed import from_env, stop

    stop()  # under torchrun: leave the process group once every rank is done (a no-op in one process)
    if from_env().main:  # under torchrun: rank 0 speaks
        print_result(result)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.recipes.plan import make_plan, print_plan
    from tunesmith.rundir import write_json

    cfg = load_config(args.config, args.overrides)
    _trains()  # the plan measures the run's own steps, so its process keeps memory as the run's does
    plan = make_plan(cfg, calibration_steps=args.steps, ranks=args.ranks, link_gbps=args.link_gbps)
    print_plan(plan)
    if args.json:
        write_json(args.json, plan.to_json())
    return 1 if plan.warnings else 0


def _verify(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.recipes.verify import print_report, verify

    options = tuple(args.options) if args.options else None
    cfg = load_config(args.config, args.overrides)
    _trains()
    if args.ranks > 1:
        from tunesmith.recipes.verify_ranks import print_ranks_report, verify_ranks

        ranks = verify_ranks(cfg, args.ranks, steps=args.steps)
        print_ranks_report(ranks)
        return 0 if ranks.ok else 1
    report = verify(cfg, steps=args.steps, options=options)
    print_report(report)
    return 0 if report.ok else 1


def _eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tunesmith.recipes.evaluate import eval_command
    from tunesmith.recipes.summary import print_result
    from tunesmith.recipes.train import RunResult

    result = eval_command(args.target, args.config, args.data, args.kind, args.fields, args.out)
    if "tuned" in result:
        tuned = {**result["tuned"], **{k: result.get(k) for k in ("comparison", "comparison_base", "versus_trivial")}}
        print_result(RunResult(Path(args.target), result["base"], tuned, 0))
    else:
        Console().print_json(data=result["model"]["metrics"])
        if "task" in result["model"]:
            Console().print_json(data=result["model"]["task"]["metrics"])
    print(f"wrote {result['written_to']}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config

    cfg = load_config(args.config, args.overrides)
    _trains()
    from tunesmith.recipes.sweep import run_sweep, run_worker, sweep_folder

    folder = Path(args.out) if args.out else sweep_folder(cfg)
    if args.worker_index:  # an extra worker the first process started: trials only
        run_worker(cfg, folder, args.trials, args.workers, args.storage, args.worker_index, args.deadline)
        return 0
    summary = run_sweep(
        cfg, folder, args.trials, args.timeout, args.workers, args.storage, Path(args.config), args.overrides
    )
    from tunesmith.recipes.summary import print_sweep

    print_sweep(summary, folder)
    return 0


def _select(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config

    cfg = load_config(args.config, args.overrides)
    _trains()
    from tunesmith.recipes.select import run_select
    from tunesmith.recipes.summary import print_select

    folder = Path(args.out) if args.out else Path(str(Path(cfg.output.dir)) + "-select")
    print_select(run_select(cfg, args.bases, folder, args.steps), folder)
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from tunesmith.quickstart import run_quickstart

    _trains()
    run_quickstart(args.out, args.overrides)
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("train", help="run a fine-tuning job from a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key.sub=value settings that win over the file")
    p.add_argument("--resume", action="store_true", help="continue this run from its last complete checkpoint")
    p.add_argument(
        "--ranks", type=POSITIVE, default=1,
        help="train data-parallel on this many processes of this machine (one GPU each when there are GPUs), as "
        "torchrun --standalone --nproc-per-node N would; several machines: torchrun",
    )  # fmt: skip
    p.set_defaults(func=_train)

    p = verbs.add_parser("plan", help="estimate steps, tokens, peak memory and epoch time before launching")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=POSITIVE, default=3, help="real training steps to time (after one warm-up)")
    p.add_argument("--json", type=Path, default=None, help="also write the plan as JSON to this file")
    p.add_argument(
        "--ranks", type=POSITIVE, default=1,
        help="also plan each rank of a data-parallel run on this many processes (torchrun; train.distributed)",
    )  # fmt: skip
    p.add_argument(
        "--link-gbps", type=positive_float, default=10.0,
        help="bandwidth between ranks, GB/s, that --ranks quotes communication time at (default 10: PCIe-class)",
    )  # fmt: skip
    p.set_defaults(func=_plan)

    p = verbs.add_parser("verify", help="check that each speed option leaves losses and gradients unchanged")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=POSITIVE, default=3, help="optimizer steps per variant")
    p.add_argument(
        "--options",
        nargs="+",
        default=None,
        choices=(*SPEED_OPTIONS, "mixed_precision"),
        help="speed options to check (default: all the config could use; mixed_precision where auto picks it)",
    )
    p.add_argument(
        "--ranks", type=POSITIVE, default=1,
        help="instead: check that training on this many data-parallel ranks (torchrun, train.distributed) gives the "
        "losses and weights of one process",
    )  # fmt: skip
    p.set_defaults(func=_verify)

    p = verbs.add_parser("eval", help="score a finished run against its base, or any model, on held-out data")
    p.add_argument("target", help="run directory, registry name, HF model directory or .gguf file")
    p.add_argument("--config", default=None, help="YAML config whose data.eval, task and eval sections are used")
    p.add_argument("--data", nargs="*", default=[], help="held-out files (replace the config's data.eval)")
    p.add_argument("--kind", default="auto", choices=KINDS, help="record kind (default: detect)")
    p.add_argument("--fields", nargs="*", default=[], metavar="SRC=DST", help="map --data columns to fields")
    p.add_argument("--out", default=None, help="JSON file for the scores (default: RUN/eval/eval.json)")
    p.set_defaults(func=_eval)

    p = verbs.add_parser("select", help="compare candidate base models on the config's data: zero-shot and probed")
    p.add_argument("config", help="YAML config whose data, task and training settings every candidate gets")
    p.add_argument("overrides", nargs="*", help="key.sub=value settings that win over the file")
    p.add_argument("--bases", nargs="+", required=True, help="registry names, HF model folders or .gguf files")
    p.add_argument("--steps", type=POSITIVE, default=None, help="probe length (default: the config's train section)")
    p.add_argument("--out", default=None, help="folder for the candidates' runs (default: output.dir + '-select')")
    p.set_defaults(func=_select)

    p = verbs.add_parser(
        "sweep", help="search hyperparameters (Optuna): trials on a validation split, the winner tested once"
    )
    p.add_argument("config", help="YAML config; its sweep: section names the space and the objective")
    p.add_argument("overrides", nargs="*", help="key.sub=value settings that win over the file")
    p.add_argument("--trials", type=POSITIVE, required=True, help="trials to run (pruned and failed ones count)")
    p.add_argument("--timeout", type=float, default=None, metavar="MINUTES", help="start no trial after this")
    p.add_argument("--workers", type=POSITIVE, default=1, help="worker processes sharing the study")
    p.add_argument("--storage", default=None, help="database URL of a study several machines share")
    p.add_argument("--out", default=None, help="sweep folder (default: output.dir + '-sweep')")
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_sweep)

    p = verbs.add_parser("quickstart", help="tune the embedded default model on the bundled support dataset")
    p.add_argument("--out", default="runs/quickstart", help="run directory (replaced if it exists)")
    p.add_argument("overrides", nargs="*", help="key.sub=value settings, e.g. train.max_steps=10")
    p.set_defaults(func=_quickstart)

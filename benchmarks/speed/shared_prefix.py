"""Shared-prefix reading against padded batches: the base model's baselines on a task's held-out rows, both ways, in
one process, on the same rows.

    python benchmarks/speed/shared_prefix.py benchmarks/tasks/pubmedqa.yaml --rows 12 [--threads 2]
    python benchmarks/speed/shared_prefix.py benchmarks/tasks/scitldr.yaml --rows 8

The baselines (label likelihood and generation, zero- and few-shot: eval/baselines.py) are scored on the first --rows
held-out rows of the config, once as tunesmith scores them (eval/prefix.py reads prompts that share most of their
tokens through one cache) and once with every prompt read whole in padded batches, the way they were scored before,
one baseline at a time, the two ways in turn. It prints the seconds of each and how many predictions differ (none
should: the arithmetic is the same up to float rounding).
"""

from __future__ import annotations

import argparse
import time

import torch

from tunesmith.config import load_config
from tunesmith.eval import prefix
from tunesmith.eval.baselines import score_baselines
from tunesmith.eval.tasks import run_task
from tunesmith.methods import build_method
from tunesmith.models.loading import load_base
from tunesmith.models.trained import TrainedSettings
from tunesmith.recipes.evaluate import _context


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [f"task.max_rows={args.rows}"])
    chosen = prefix.SAVING  # the threshold tunesmith uses
    device = torch.device("cpu")
    settings = TrainedSettings.of_config(cfg)
    base = load_base(cfg.model, device, settings.weight_dtype(device))
    method = build_method(cfg)
    ctx = _context(cfg, method, settings.renderer(base.tokenizer), device)
    pairs, train = ctx.prepared.eval_examples[: args.rows], ctx.prepared.train_examples
    zero = run_task(base.model, ctx.renderer, pairs, cfg.task, cfg.eval.batch_size, device)
    results: dict[str, dict] = {"shared prefix": {}, "padded batches": {}}
    seconds: dict[str, dict[str, float]] = {"shared prefix": {}, "padded batches": {}}
    wanted = [n for n in cfg.task.baselines if cfg.task.type == "classification" or not n.startswith("likelihood")]
    for name in wanted:  # one baseline at a time (generation zero-shot is the zero-shot answers above, reused)
        task = cfg.task.model_copy(update={"baselines": [name]})
        for arm, saving in (("shared prefix", chosen), ("padded batches", float("inf"))):
            prefix.SAVING = saving  # inf: no prompt set ever reads few enough tokens to take the shared path
            start = time.perf_counter()
            scored = score_baselines(
                base.model, ctx.renderer, pairs, train, task, zero, cfg.eval.batch_size, device, cfg.train.seed
            )["baselines"]
            seconds[arm][name] = time.perf_counter() - start
            results[arm][name] = scored[name]
        prefix.SAVING = chosen
    print(f"{cfg.task.type}: {len(pairs)} rows, {cfg.model.base}, {torch.get_num_threads()} threads")
    print("| baseline | padded batches | shared prefix | ratio | predictions that differ |\n|---|---:|---:|---:|---:|")
    for name in wanted:
        batched, shared = seconds["padded batches"][name], seconds["shared prefix"][name]
        ours, theirs = results["shared prefix"][name]["predictions"], results["padded batches"][name]["predictions"]
        differ = sum(a != b for a, b in zip(ours, theirs, strict=True))
        print(f"| {name} | {batched:.1f} s | {shared:.1f} s | {batched / shared:.2f}x | {differ} of {len(pairs)} |")
    batched, shared = sum(seconds["padded batches"].values()), sum(seconds["shared prefix"].values())
    print(f"| all | {batched:.1f} s | {shared:.1f} s | {batched / shared:.2f}x | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

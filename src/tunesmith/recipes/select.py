"""Choose the base model by evidence: every candidate scored on the config's own held-out rows, zero-shot and after
the same short LoRA probe.

    tunesmith select examples/sst2-head.yaml --bases smollm2-135m-instruct gemma3-270m [--steps 50] [--out DIR]

Each candidate is an ordinary run in DIR/<name>: the same data, the same held-out rows, the same steps, batch size
and learning rate (the same training examples), so the only difference is the base. Its base evaluation is the
zero-shot score with the strongest honest baseline (eval/baselines.py); after the probe come the task metric with a
95% interval, the gain over its own zero-shot (paired interval), held-out loss, forgetting, tokens/s, peak memory
and wall time. The winner has the best task metric; when the best and a cheaper candidate (fewer parameters) cannot
be told apart (their paired difference's interval holds 0), the cheaper one wins, and the verdict says so.
DIR/select.json holds the table; DIR/select.html draws it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from tunesmith.config import Config, build_config
from tunesmith.eval.bootstrap import bootstrap_metric, metric_interval
from tunesmith.eval.general import budget_share
from tunesmith.eval.tasks import HEADLINE
from tunesmith.models.registry import resolve_base
from tunesmith.recipes.sweep_space import SweepError
from tunesmith.rundir import RunDir, write_json


class SelectError(SweepError):
    """A selection that cannot start (fewer than two candidates, one named twice)."""


def _slug(base: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(base).name.removesuffix(".gguf")).strip("-") or "base"


def candidate_config(cfg: Config, base: str, folder: Path, steps: int | None) -> Config:
    raw = cfg.model_dump(mode="json")
    raw["model"]["base"] = base
    if steps is not None:
        raw["train"]["max_steps"] = steps
    raw["eval"]["general"] = cfg.method.type == "sft"  # forgetting is measured for causal-LM runs
    if not raw["eval"]["general"]:
        raw["eval"]["forgetting_budget"] = None
    raw["eval"]["samples"] = min(raw["eval"]["samples"], 2)
    raw["output"] = {"dir": str(folder), "overwrite": True}
    return build_config(raw)


def _run_stats(run_dir: Path) -> dict:
    """Steady tokens/s (the last step's running average) and peak memory of a run, from its metrics.jsonl."""
    steps = [x for x in RunDir(run_dir).metrics() if "tokens_per_s" in x]
    return {
        "tokens_per_s": steps[-1]["tokens_per_s"] if steps else None,
        "peak_memory_mb": max((x.get("peak_gpu_mb") or x.get("peak_rss_mb") or 0 for x in steps), default=None),
    }


def _task_rows(tuned: dict) -> tuple[list, list]:
    return tuned["task"]["predictions"], tuned["task"]["references"]


def candidate_row(cfg: Config, base: str, result, seconds: float) -> dict:
    """One candidate's line of the table."""
    tuned, base_eval = result.tuned, result.base
    row = {
        "base": base,
        "run_dir": result.run_dir.name,
        "parameters": result.params.get("total"),
        "held_out_loss": tuned["metrics"]["loss"],
        "zero_shot_loss": base_eval["metrics"]["loss"],
        "forgetting": budget_share(tuned["forgetting"]) if tuned.get("forgetting") else None,
        "wall_seconds": round(seconds, 1),
        "train_seconds": tuned.get("train_seconds"),
        **_run_stats(result.run_dir),
    }
    if cfg.task.type != "none":
        metric = HEADLINE[cfg.task.type][0]
        predictions, references = _task_rows(tuned)
        value, low, high = metric_interval(
            cfg.task.type, metric, predictions, references, cfg.task.labels or None, cfg.task.bootstrap_resamples
        )
        gain = tuned["comparison"][metric]
        row |= {
            "metric": metric,
            "tuned": {"value": value, "low": low, "high": high},
            "zero_shot": {"value": gain["base"], "method": tuned.get("comparison_base")},
            "gain": {"diff": gain["diff"], "low": gain["low"], "high": gain["high"]},
        }
    return row


def verdict(cfg: Config, rows: list[dict], tuned: dict[str, dict]) -> dict:
    """The winner, and why: the best task metric (lowest held-out loss without a task); a cheaper candidate the best
    cannot be told apart from (paired interval of the difference holds 0) wins instead, said so."""
    if cfg.task.type == "none":
        best = min(rows, key=lambda r: r["held_out_loss"])
        return {"winner": best["base"], "reason": f"lowest held-out loss ({best['held_out_loss']:.4f})"}
    metric = rows[0]["metric"]
    best = max(rows, key=lambda r: (r["tuned"]["value"], -(r["parameters"] or 0)))  # a tie goes to the cheaper
    reason = f"best {metric} after the probe ({best['tuned']['value']:.4f})"
    tied = [r["base"] for r in rows if r is not best and r["tuned"]["value"] == best["tuned"]["value"]]
    if tied:
        reason += f", tied with {', '.join(tied)}; the one with fewer parameters"
    cheaper = sorted(
        (r for r in rows if r is not best and (r["parameters"] or 0) < (best["parameters"] or 0)),
        key=lambda r: r["parameters"] or 0,
    )
    preds_best, refs = _task_rows(tuned[best["base"]])
    labels = cfg.task.labels or None
    for other in cheaper:
        preds_other, _ = _task_rows(tuned[other["base"]])
        diff = bootstrap_metric(cfg.task.type, metric, preds_other, preds_best, refs, labels, seed=cfg.train.seed)
        if diff.low <= 0.0:
            return {
                "winner": other["base"],
                "reason": f"{best['base']} scored higher ({best['tuned']['value']:.4f} against "
                f"{other['tuned']['value']:.4f}), but the paired 95% interval of the difference [{diff.low:+.4f}, "
                f"{diff.high:+.4f}] holds 0: they cannot be told apart on these rows, so the cheaper one "
                f"({other['parameters']:,} parameters against {best['parameters']:,}) wins",
                "difference": diff.as_dict(),
            }
    return {"winner": best["base"], "reason": reason}


def run_select(
    cfg: Config,
    bases: list[str],
    folder: Path,
    steps: int | None = None,
    log: Callable[[str], object] = print,
) -> dict:
    if len(bases) < 2:
        raise SelectError("select compares candidates: name at least two bases (--bases A B ...)")
    slugs = [_slug(b) for b in bases]
    if len(set(slugs)) != len(slugs):
        raise SelectError(f"--bases names one candidate twice ({', '.join(bases)})")
    for base in bases:  # every candidate resolves before any of them trains
        resolve_base(base)
    from tunesmith.recipes.train import run_training

    rows, tuned = [], {}
    for base, slug in zip(bases, slugs, strict=True):
        log(f"select: candidate {base}: zero-shot, then the probe fine-tune, in {folder / slug}")
        started = time.perf_counter()
        result = run_training(candidate_config(cfg, base, folder / slug, steps), log=log)
        rows.append(candidate_row(cfg, base, result, time.perf_counter() - started))
        tuned[base] = result.tuned
    summary = {
        "task": cfg.task.type,
        "steps": result.params.get("steps"),
        "rows": {"train": result.params.get("train_rows"), "held_out": result.params.get("eval_rows")},
        "candidates": rows,
        **verdict(cfg, rows, tuned),
    }
    write_json(folder / "select.json", summary)
    from tunesmith.report.select_html import write_select_report

    write_select_report(folder, summary)
    return summary

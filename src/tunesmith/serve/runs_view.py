"""What the dashboard shows of the runs directory: one summary per run folder, a run's whole record, and the
differences between runs' configs. Read-only: nothing here writes into a run.

    summaries(runs_dir, jobs)        # every run and job: status, base, method, data, headline, gain, forgetting
    detail(run_dir)                  # config, metrics.jsonl records, eval records, files to open or download
    config_diff([run_a, run_b])      # flattened config keys whose values differ
"""

from __future__ import annotations

import fcntl
import json
import math
from pathlib import Path
from typing import Any

import yaml

from tunesmith.rundir import MARKER, RunDir, flatten, lock_path

DOCUMENTS = {  # what a run page links to: name -> (file inside the run folder, media type)
    "report": ("report.html", "text/html; charset=utf-8"),
    "card": ("MODEL_CARD.md", "text/markdown; charset=utf-8"),
    "audit": ("audit.json", "application/json"),
    "config": ("config.yaml", "text/yaml; charset=utf-8"),
}


def is_running(run: Path) -> bool:
    """A `tunesmith train` holds the run's lock file (rundir.run_lock) while it trains."""
    lock = lock_path(run)
    if not lock.is_file():
        return False
    try:
        with open(lock) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _read(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _raw_config(run: Path) -> dict:
    try:
        value = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return value if isinstance(value, dict) else {}


def _metrics(run: Path) -> tuple[list[dict], int]:
    """metrics.jsonl's whole lines as records, and the byte offset after the last whole line (where a live stream
    of the file continues; a line being written is left for it)."""
    try:
        data = (run / "metrics.jsonl").read_bytes()
    except OSError:
        return [], 0
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, end


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def headline(base: dict, tuned: dict) -> dict[str, Any]:
    """The run's headline number: its task metric with the gain over the strongest base and its paired interval, or,
    for a run without a task, the held-out loss before and after."""
    task = tuned.get("task") or {}
    comparison = tuned.get("comparison") or {}
    if task.get("metrics") and comparison:
        metric = next(iter(comparison))
        diff = comparison[metric] or {}
        return {
            "metric": metric,
            "value": _finite(task["metrics"].get(metric)),
            "gain": _finite(diff.get("diff")),
            "low": _finite(diff.get("low")),
            "high": _finite(diff.get("high")),
        }
    loss, base_loss = (tuned.get("metrics") or {}).get("loss"), (base.get("metrics") or {}).get("loss")
    if loss is None:
        return {}
    gain = base_loss - loss if isinstance(base_loss, int | float) else None
    return {"metric": "held-out loss", "value": _finite(loss), "gain": _finite(gain), "low": None, "high": None}


def forgetting(tuned: dict) -> dict[str, Any]:
    """How many probe families got worse beyond noise, and the largest change among them."""
    record = tuned.get("forgetting") or {}
    families = record.get("families") or {}
    worse = [name for name, f in families.items() if f.get("worse")]
    return {"families": len(families), "worse": worse, "over_budget": record.get("over_budget")}


def status(run: Path) -> str:
    if is_running(run):
        return "running"
    if (run / "final").is_dir() and (run / "eval" / "tuned.json").is_file():
        return "succeeded"
    if (run / "checkpoints").is_dir() or (run / "metrics.jsonl").is_file():
        return "stopped"  # a killed or failed run: `tunesmith train CONFIG --resume` continues it
    return "created"


def summary(run: Path) -> dict[str, Any]:
    cfg = _raw_config(run)
    base, tuned = _read(run / "eval" / "base.json"), _read(run / "eval" / "tuned.json")
    data = [spec.get("path") for spec in ((cfg.get("data") or {}).get("train") or []) if isinstance(spec, dict)]
    records, _ = _metrics(run)
    steps = [r for r in records if "split" not in r]  # train steps; evaluations say their split
    return {
        "name": run.name,
        "status": status(run),
        "base": str((cfg.get("model") or {}).get("base") or ""),
        "method": str((cfg.get("method") or {}).get("type") or "sft"),
        "adapter": str((cfg.get("adapter") or {}).get("method") or ""),
        "data": [str(d) for d in data if d],
        "headline": headline(base, tuned),
        "forgetting": forgetting(tuned),
        "train_seconds": _finite(tuned.get("train_seconds")),
        "step": steps[-1].get("step") if steps else 0,
        "max_steps": (cfg.get("train") or {}).get("max_steps"),
        "modified": int(max((p.stat().st_mtime for p in (run, run / "metrics.jsonl") if p.exists()), default=0)),
    }


def run_folders(runs_dir: Path) -> list[Path]:
    """Folders tunesmith made in the runs directory (its marker, or a config beside metrics), newest first; the
    server's own state folder and hidden folders are not runs."""
    if not runs_dir.is_dir():
        return []
    found = [
        p
        for p in runs_dir.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / MARKER).is_file() or ((p / "config.yaml").is_file() and (p / "metrics.jsonl").is_file()))
    ]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def detail(run: Path) -> dict[str, Any]:
    rundir = RunDir(run)
    evals = {p.stem: _read(p) for p in sorted(rundir.eval_dir.glob("*.json"))} if rundir.eval_dir.is_dir() else {}
    documents = [name for name, (file, _) in DOCUMENTS.items() if (run / file).is_file()]
    records, offset = _metrics(run)
    return summary(run) | {
        "config": _raw_config(run),
        "metrics": records,
        "metrics_bytes": offset,
        "eval": evals,
        "documents": documents,
        "final": (run / "final").is_dir(),
        "exports": sorted(p.name for p in run.glob("export*") if p.is_dir()),
    }


def config_diff(runs: list[Path]) -> list[dict[str, Any]]:
    """Every flattened config key whose value is not the same in all runs, with each run's value (None: unset)."""
    flats = [flatten(_raw_config(run)) for run in runs]
    keys = sorted(set().union(*flats)) if flats else []
    out = []
    for key in keys:
        values = [flat.get(key) for flat in flats]
        if any(v != values[0] for v in values[1:]):
            out.append({"key": key, "values": values})
    return out


def studies(runs_dir: Path) -> list[dict[str, Any]]:
    """`tunesmith select` and `tunesmith sweep` folders in the runs directory: what they chose, and their pages."""
    out = []
    if not runs_dir.is_dir():
        return out
    for folder in sorted(runs_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        if (folder / "select.json").is_file():
            summary = _read(folder / "select.json")
            candidates = [c.get("base") for c in summary.get("candidates") or [] if isinstance(c, dict)]
            chosen = f"winner {summary.get('winner')} of {', '.join(map(str, candidates))}: {summary.get('reason', '')}"
            out.append({"name": folder.name, "kind": "select", "chosen": chosen})
        if (folder / "sweep.json").is_file():
            summary = _read(folder / "sweep.json")
            best = summary.get("best") or {}
            chosen = (
                f"best of {summary.get('trials_run')} trials ({summary.get('pruned')} pruned): trial "
                f"{best.get('trial')}, {json.dumps(best.get('params') or {})}"
            )
            out.append({"name": folder.name, "kind": "sweep", "chosen": chosen})
    return out

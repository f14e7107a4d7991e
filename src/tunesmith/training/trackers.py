"""Experiment trackers people already use, fed from the run's own record (`train.report_to`):

    check_installed(cfg)                               # before the run folder is touched
    trackers = Trackers.open(cfg, out, resume_step)
    loop.metrics.sinks.append(trackers.log)           # each metrics.jsonl record, as it is written
    trackers.finish(out)                              # report.html and MODEL_CARD.md as artifacts; closed

- tensorboard: event files in RUN/tensorboard, one scalar per number of each record (`train/loss`, `eval/loss`,
  `forgetting/families.chat.diff`, ...); a resumed run purges what was written after its checkpoint, as
  metrics.jsonl drops those lines, so no step is there twice.
- mlflow: one MLflow run per tunesmith run (its id kept in RUN/mlflow_run_id, so a resume continues it), the
  resolved config as parameters, the same metrics, the report and card as artifacts. The tracking URI is
  train.mlflow_uri, else MLFLOW_TRACKING_URI, else a local SQLite database beside the run.

metrics.jsonl stays the record of truth: a tracker only mirrors it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from pathlib import Path
from typing import Any

from tunesmith.config import Config
from tunesmith.errors import TunesmithError
from tunesmith.rundir import flatten

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
MLFLOW_PARAM_LIMIT = 500  # characters MLflow keeps of a parameter's value


class TrackerError(TunesmithError):
    """A tracker the config asks for cannot be used."""


def scalars(record: dict) -> tuple[str, int, dict[str, float]]:
    """(section, step, name -> number) of a metrics.jsonl record: train steps have no split; nested dicts are
    flattened with dots; flags, strings and non-finite numbers are left out."""
    section = str(record.get("split") or "train")
    out: dict[str, float] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{name}.{key}" if name else str(key))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)

    walk({k: v for k, v in record.items() if k not in ("step", "split", "final")}, "")
    return section, int(record.get("step", 0)), out


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_installed(cfg: Config) -> None:
    """Refuse a tracker whose package is missing, before the run folder is touched."""
    missing = [name for name in dict.fromkeys(cfg.train.report_to) if not _installed(PACKAGES[name])]
    if missing:
        raise TrackerError(
            f"train.report_to: {', '.join(missing)} is not installed; pip install 'tunesmith[trackers]' (or "
            f"pip install {' '.join('mlflow-skinny' if m == 'mlflow' else m for m in missing)})"
        )


class Trackers:
    def __init__(self) -> None:
        self.writer = None  # tensorboard SummaryWriter
        self.mlflow = None  # the mlflow module, with an active run
        self.client = None
        self.run_id: str | None = None

    @classmethod
    def open(cls, cfg: Config, out: Path, resume_step: int = 0) -> Trackers:
        check_installed(cfg)
        wanted = list(dict.fromkeys(cfg.train.report_to))
        trackers = cls()
        if "tensorboard" in wanted:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events at or after it: what a resume writes again
            trackers.writer = SummaryWriter(
                str(out / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
            )
            trackers.writer.add_text(
                "config", "```yaml\n" + (out / "config.yaml").read_text(encoding="utf-8") + "\n```"
            )
        if "mlflow" in wanted:
            trackers._open_mlflow(cfg, out)
        return trackers

    def _open_mlflow(self, cfg: Config, out: Path) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = cfg.train.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
        local = uri is None
        if local:
            uri = f"sqlite:///{out.resolve().parent / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)
        name = "tunesmith"
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            artifacts = (out.resolve().parent / "mlflow-artifacts").as_uri() if local else None
            experiment_id = client.create_experiment(name, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        id_file = out / "mlflow_run_id"
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else None
        if run_id is None:
            run = client.create_run(experiment_id, run_name=out.name, tags={"tunesmith.run": str(out.resolve())})
            run_id = run.info.run_id
            id_file.write_text(run_id + "\n", encoding="utf-8")
            params = {k: str(v)[:MLFLOW_PARAM_LIMIT] for k, v in flatten(cfg.model_dump(mode="json")).items()}
            items = list(params.items())
            from mlflow.entities import Param

            for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
                client.log_batch(run_id, params=[Param(k, v) for k, v in items[start : start + 100]])
        else:
            client.update_run(run_id, status="RUNNING")
        self.mlflow, self.client, self.run_id = mlflow, client, run_id

    def log(self, record: dict) -> None:
        section, step, values = scalars(record)
        if record.get("final"):
            section = "final"
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{section}/{name}", value, step)
            self.writer.flush()
        if self.client is not None and values:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [
                Metric(f"{section}/{name}".replace(" ", "_"), value, now, step) for name, value in values.items()
            ]
            for start in range(0, len(metrics), 1000):
                self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def finish(self, out: Path, ok: bool = True) -> None:
        """The report and card as artifacts (when they exist), and every tracker closed."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.client is not None:
            if ok:
                for name in ("report.html", "MODEL_CARD.md"):
                    if (out / name).is_file():
                        self.client.log_artifact(self.run_id, str(out / name))
            self.client.set_terminated(self.run_id, status="FINISHED" if ok else "KILLED")
            self.client = None

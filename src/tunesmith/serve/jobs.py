"""A fine-tuning job as tunesmith sees it: resolved hyperparameters, the Config `tunesmith train` runs, and the job
as OpenAI's API shows it.

"auto" hyperparameters follow OpenAI's published rule for epochs (about 100 to 25,000 examples seen in all, 3
epochs when that allows) and pick a batch that suits small CPU runs; the learning rate is the multiplier times
tunesmith's LoRA default. Checkpoints (with a held-out evaluation each) are saved about every tenth of the run,
so a killed job loses little and every checkpoint has a validation loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config import Config, DPOMethod, TrainConfig, build_config
from tunesmith.config_yaml import parse_override
from tunesmith.errors import TunesmithError
from tunesmith.serve.store import JobRecord
from tunesmith.training.loop import total_steps

BASE_LR = TrainConfig.model_fields["lr"].default
DEFAULT_BETA = DPOMethod.model_fields["beta"].default
MIN_EXAMPLES, MAX_EXAMPLES, DEFAULT_EPOCHS, MAX_EPOCHS = 100, 25_000, 3, 25
# Sections a job may tune beyond the hyperparameters; paths, the model and the output folder stay the server's.
OVERRIDABLE = ("train.", "adapter.", "eval.", "audit.allow", "data.max_length", "data.eval_fraction",
               "data.eval_max_rows", "data.skip_invalid", "data.replay.")  # fmt: skip
OWNED = ("train.seed", "train.epochs", "train.batch_size", "train.lr")  # set through the API's own fields


class JobError(TunesmithError):
    """A job request that cannot run; `param` names the request field."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.param, self.code = param, code


@dataclass
class Resolved:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None = None  # dpo jobs only

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }
        if self.beta is not None:
            out["beta"] = self.beta
        return out


def resolve_hyperparameters(requested: dict[str, Any], rows: int, ranks: int = 1) -> Resolved:
    epochs = requested.get("n_epochs", "auto")
    if epochs == "auto":
        epochs = DEFAULT_EPOCHS
        if rows * epochs < MIN_EXAMPLES:
            epochs = min(MAX_EPOCHS, math.ceil(MIN_EXAMPLES / max(1, rows)))
        elif rows * epochs > MAX_EXAMPLES:
            epochs = max(1, MAX_EXAMPLES // rows)
    batch = requested.get("batch_size", "auto")
    if batch == "auto":
        batch = 1 << max(0, min(3, int(math.log2(max(1, rows // 8)))))  # 1..8, so a tiny file still takes steps
        batch = -(-batch // ranks) * ranks  # a whole share of every step for each training process
    elif int(batch) % ranks:
        raise JobError(
            f"batch_size {batch}: this server trains each job on {ranks} processes, which must share every step "
            f"evenly; give a multiple of {ranks}, or auto",
            "hyperparameters.batch_size",
        )
    rate = requested.get("learning_rate_multiplier", "auto")
    beta = requested.get("beta")  # present for dpo jobs
    beta = DEFAULT_BETA if beta == "auto" else None if beta is None else float(beta)
    return Resolved(int(epochs), int(batch), 1.0 if rate == "auto" else float(rate), beta)


def check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        try:
            key = ".".join(parse_override(item)[0])
        except TunesmithError as err:
            raise JobError(str(err), "overrides") from None
        if key in OWNED:
            raise JobError(f"override {key}: set it through the job's seed or hyperparameters", "overrides")
        if not key.startswith(OVERRIDABLE) and key not in OVERRIDABLE:
            raise JobError(f"override {key}: jobs may set only {', '.join(OVERRIDABLE)} keys", "overrides")


def _micro_batch(batch: int) -> int:
    return max(d for d in range(1, min(4, batch) + 1) if batch % d == 0)


def job_config(
    job: JobRecord,
    train_file: Path,
    valid_file: Path | None,
    rows: int,
    run_dir: Path,
    trust_remote_code: bool,
    ranks: int = 1,
) -> tuple[Config, Resolved]:
    """The Config `tunesmith train` runs for this job (on `ranks` processes), and the hyperparameters it resolved
    to."""
    hyper = resolve_hyperparameters(job.hyperparameters, rows, ranks)
    raw: dict[str, Any] = {
        "model": {"base": job.base, "trust_remote_code": trust_remote_code},
        "data": {"train": [{"path": str(train_file), "format": "jsonl"}]},
        "train": {
            "epochs": hyper.n_epochs,
            "batch_size": hyper.batch_size,
            "micro_batch_size": _micro_batch(hyper.batch_size // ranks),
            "lr": BASE_LR * hyper.learning_rate_multiplier,
            "seed": job.seed,
        },
        "output": {"dir": str(run_dir)},
    }
    if valid_file is not None:
        raw["data"]["eval"] = [{"path": str(valid_file), "format": "jsonl"}]
    if job.method == "dpo":
        raw["method"] = {"type": "dpo", "beta": hyper.beta or DEFAULT_BETA}
    overrides = job.overrides or []
    try:
        cfg = build_config(raw, overrides, source=f"job {job.id}")
    except TunesmithError as err:
        raise JobError(str(err), "overrides") from None
    given = {".".join(parse_override(o)[0]) for o in overrides}
    every = max(1, math.ceil(total_steps(cfg.train, rows) / 10))
    if "train.save_every" not in given:
        cfg.train.save_every = every
    if "train.eval_every" not in given:
        cfg.train.eval_every = cfg.train.save_every
    return cfg, hyper


def job_json(job: JobRecord) -> dict[str, Any]:
    """The job in OpenAI's FineTuningJob shape."""
    hyper = dict(job.hyperparameters)
    for key in ("n_epochs", "batch_size", "learning_rate_multiplier", *(("beta",) if job.method == "dpo" else ())):
        hyper.setdefault(key, "auto")
    return {
        "object": "fine_tuning.job",
        "id": job.id,
        "created_at": job.created_at,
        "model": job.model,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "hyperparameters": hyper,
        "method": {"type": job.method, job.method: {"hyperparameters": hyper}},
        "status": job.status,
        "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at,
        "error": job.error,
        "organization_id": "tunesmith",
        "result_files": job.result_files or [],
        "seed": job.seed,
        "trained_tokens": job.trained_tokens,
        "estimated_finish": None,
        "integrations": [],
        "metadata": job.metadata,
        "user_provided_suffix": job.suffix,
    }

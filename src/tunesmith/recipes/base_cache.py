"""The base model's evaluation, kept across runs (eval.reuse_base).

Scoring the base is a run's fixed cost, and with every baseline it can be the larger part of a run: pubmedqa's
few-shot baselines read prompts of up to 4 × 768 tokens and took about an hour on one core. A run that changes only how
it trains (learning rate, steps, batch, adapter: what a sweep's winner changes against the hand-written config) scores
the base exactly as the earlier run did, so it reads that evaluation back instead (one process only: under torchrun
every rank scores the base, as before).

The key holds everything the base's numbers depend on, and a miss is only ever slower:
- the base's files (names, sizes, modification times) and the precision and device it is evaluated in;
- the whole resolved config except the keys of TRAINING_ONLY and TRAINING_ONLY_SECTIONS, which it never reads;
- the content of the rows it is scored on and the rows few-shot prompts draw from, and of the probe families;
- tunesmith's own files (code and bundled data) and the versions of torch, transformers and peft.
So a changed row, setting, model file or line of tunesmith's code is another entry, never a stale number.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path

from tunesmith.config import Config
from tunesmith.eval.general import probe_examples
from tunesmith.models.loading import LoadedBase
from tunesmith.models.registry import cache_root, weights_signature
from tunesmith.rundir import flatten, read_json, write_json
from tunesmith.training.loop import data_fingerprint
from tunesmith.training.prepare import Prepared

# Config keys that change how a run trains and never what its base evaluation computes. Everything else keys the
# cache: train.seed draws few-shot rows and a head's start, train.packing shapes the evaluation's batches,
# train.compile and train.distributed run it through other kernels. train.threads is left out although it orders the
# floating-point sums differently: that moves the base's numbers no more than running it again on another machine.
TRAINING_ONLY_SECTIONS = ("adapter.", "output.", "sweep.")
TRAINING_ONLY = frozenset(
    {
        "train.epochs",
        "train.max_steps",
        "train.batch_size",
        "train.micro_batch_size",
        "train.lr",
        "train.schedule",
        "train.warmup_ratio",
        "train.weight_decay",
        "train.betas",
        "train.max_grad_norm",
        "train.max_loss_ratio",
        "train.save_every",
        "train.keep_checkpoints",
        "train.eval_every",
        "train.log_every",
        "train.report_to",
        "train.mlflow_uri",
        "train.threads",
        "train.group_by_length",
        "train.activation_checkpointing",
        "eval.reuse_base",
        "eval.forgetting_budget",
    }
)


@functools.cache
def _code_signature() -> str:
    """A digest of tunesmith's files (code and bundled data) and of the libraries that compute the numbers."""
    digest = hashlib.sha256()
    root = Path(str(resources.files("tunesmith")))
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".jsonl", ".json", ".yaml", ".txt"}:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    for package in ("torch", "transformers", "peft"):
        digest.update(f"{package}=={metadata.version(package)}".encode())
    return digest.hexdigest()


def _rows_signature(prepared: Prepared) -> str:
    digest = hashlib.sha256()
    digest.update(data_fingerprint(prepared.train).encode())
    digest.update(data_fingerprint(prepared.eval).encode())
    for examples in (prepared.eval_examples, prepared.train_examples):
        for example, _spec in examples:
            digest.update(repr(example).encode())
    digest.update(repr((prepared.train_names, prepared.eval_names, sorted(prepared.retention))).encode())
    return digest.hexdigest()


def cache_key(cfg: Config, base_files: list[Path], prepared: Prepared, precision: str) -> str:
    """The key of the base evaluation a run with `cfg` computes on `prepared`'s rows (module docstring); `base_files`
    are the folders (or GGUF file) the base's weights come from."""
    settings = {
        key: value
        for key, value in flatten(cfg.model_dump(mode="json")).items()
        if key not in TRAINING_ONLY and not key.startswith(TRAINING_ONLY_SECTIONS)
    }
    probes = repr(probe_examples(Path(cfg.eval.probe_data))) if cfg.eval.general and cfg.eval.probe_data else ""
    parts = [
        [(str(path.resolve()), weights_signature(path)) for path in base_files],
        precision,
        settings,
        _rows_signature(prepared),
        hashlib.sha256(probes.encode()).hexdigest(),
        _code_signature(),
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cache_file(key: str) -> Path:
    return cache_root() / "base-eval" / f"{key}.json"


def read_cached(key: str) -> dict | None:
    """The evaluation saved under `key`, or None (never saved, or unreadable: then the base is scored again)."""
    try:
        saved = read_json(cache_file(key))
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and "metrics" in saved else None


def evaluation(
    cfg: Config, base: LoadedBase, prepared: Prepared, precision: str, score: Callable[[], dict], log: Callable
) -> dict:
    """The base's evaluation: read back when an earlier run (or `tunesmith eval`) computed exactly this one, else
    `score()`d now and kept for the next. `precision` names the device, dtype and autocast it is scored in."""
    files = [base.resolved.origin, base.resolved.path, base.weights_dir]
    key = cache_key(cfg, list(dict.fromkeys(files)), prepared, precision)
    cached = read_cached(key)
    if cached is not None:
        log(
            f"base model: evaluation read from {cache_file(key)} (an earlier run scored this base on the same rows "
            "with the same settings and code; eval.reuse_base=false scores it again)"
        )
        return cached | {"reused": {"key": key}}
    scored = score()
    save(key, scored, log)
    return scored


def save(key: str, base_eval: dict, log) -> None:
    """Keep `base_eval` for later runs; a cache that cannot be written costs those runs time, never this run."""
    try:
        write_json(cache_file(key), base_eval)
    except OSError as e:
        log(f"note: the base evaluation was not cached ({e.strerror or e}); later runs will score the base again")

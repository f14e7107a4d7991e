"""Which models the server knows: base models by name, and every finished run in the runs directory.

    GET /v1/models   ->  smollm2-135m-instruct, ft:smollm2-135m-instruct:support-1a2b3c4d, ...

A base is a registered model whose package is installed, or an HF model directory the operator named with
`--model`. A run is a folder of the runs directory with final/ and eval/tuned.json (training finished); it is
addressed as `ft:<base>:<run-name>`, where <base> is the id of the base it was trained from (followed through
runs that continued other runs). A run that a fine-tuning job trains is served only once that job has succeeded:
a job cancelled after its training ended leaves a complete folder, but no model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.methods import method_class
from tunesmith.models.registry import ModelNotFound, registered_models, registry_source
from tunesmith.models.trained import TrainedSettings
from tunesmith.rundir import RunDir
from tunesmith.serve.paths import UnsafePath, is_run_name, run_path

STATE_PREFIX = "."


class UnknownModel(TunesmithError):
    """A model id the server does not serve."""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    base_id: str
    source: str  # registry name or directory for a base; the run directory for a run
    created: int
    run_dir: Path | None = None  # runs only
    method: str | None = None  # runs only: the method type that trained it (method.type)
    generative: bool = True  # answers chat and completions; else it classifies (the method's capability)
    settings: TrainedSettings = field(default_factory=TrainedSettings)  # prompt format, system message

    @property
    def is_run(self) -> bool:
        return self.run_dir is not None

    @property
    def is_reward(self) -> bool:
        return self.method == "reward_model"

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": "user" if self.is_run else "tunesmith",
            "task": "generation" if self.generative else "reward" if self.is_reward else "classification",
        }


def _mtime(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return 0


class Catalog:
    def __init__(self, runs_dir: Path, bases: list[str], unserved: Callable[[], set[str]] = set):
        self.runs_dir = runs_dir
        self.extra_bases = bases
        self.unserved = unserved  # run names of jobs that have not succeeded (Store.unserved_runs)

    # --- bases -----------------------------------------------------------------------------------------------

    def bases(self) -> list[ModelEntry]:
        out = []
        for entry in registered_models():
            try:
                gguf = registry_source(entry)  # a chunked GGUF is joined when first loaded, not when listed
            except ModelNotFound:
                continue  # its package is not installed: not servable here
            out.append(ModelEntry(entry.name, entry.name, entry.name, _mtime(gguf)))
        for source in self.extra_bases:
            path = Path(source).expanduser().resolve()
            out.append(ModelEntry(path.name, path.name, str(path), _mtime(path)))
        return out

    def base_id(self, source: str, depth: int = 0) -> str:
        """The id of the base a `model.base` value names; a run is followed to its own base."""
        names = {e.name for e in registered_models()}
        if source.lower() in names:
            return source.lower()
        path = Path(source).expanduser()
        run = RunDir(path)
        if depth < 8 and run.is_run:
            try:
                base = run.config().model.base
            except TunesmithError:
                base = path.name  # a config.yaml tunesmith cannot read: the run's own name stands in
            return self.base_id(base, depth + 1)
        return path.name

    # --- runs ------------------------------------------------------------------------------------------------

    def _run_entry(self, name: str, unserved: set[str]) -> ModelEntry | None:
        if not is_run_name(name) or name.startswith(STATE_PREFIX) or name in unserved:
            return None
        try:
            run_dir = run_path(self.runs_dir, name)
        except UnsafePath:
            return None
        run = RunDir(run_dir)
        if not run.is_run or not run.eval_file("tuned").is_file():
            return None
        try:
            cfg = run.config()
        except TunesmithError:
            return None  # a config.yaml tunesmith cannot read: the prompts it was trained with are unknown
        base_id = self.base_id(cfg.model.base)
        return ModelEntry(
            f"ft:{base_id}:{name}",
            base_id,
            str(run_dir),
            _mtime(run.eval_file("tuned")),
            run_dir,
            cfg.method.type,
            method_class(cfg.method.type).generative,
            TrainedSettings.of_config(cfg),
        )

    def runs(self) -> list[ModelEntry]:
        if not self.runs_dir.is_dir():
            return []
        unserved = self.unserved()
        entries = (self._run_entry(p.name, unserved) for p in sorted(self.runs_dir.iterdir()) if p.is_dir())
        return [e for e in entries if e is not None]

    def all(self) -> list[ModelEntry]:
        return self.bases() + self.runs()

    def get(self, model_id: str) -> ModelEntry:
        """The entry for a model id, or UnknownModel. `ft:` ids name a run folder; nothing else becomes a path."""
        if model_id.startswith("ft:"):
            parts = model_id.split(":")
            entry = self._run_entry(parts[-1], self.unserved()) if len(parts) == 3 else None
            if entry is not None and entry.id == model_id:
                return entry
        else:
            for entry in self.bases():
                if entry.id == model_id:
                    return entry
        raise UnknownModel(f"The model '{model_id}' does not exist (GET /v1/models lists the served models)")

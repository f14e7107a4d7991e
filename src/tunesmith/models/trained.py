"""The model as its run trained it: how prompts were rendered and in which dtype it is scored, for every consumer
of a finished run (eval, generate, predict and serve).

    settings = TrainedSettings.of_run(Path("runs/sst2"))   # the run's config.yaml; defaults for a bare final/
    renderer = settings.renderer(tokenizer)                # prompts exactly as training rendered them
    dtype = settings.weight_dtype(device)                  # base and tuned are scored in the same dtype

A run's prompts use its `data.prompt_format` and `data.max_length`, and open with the system message its training
rows opened with (when its training datasets share one). Every consumer builds its renderer here, so a prompt that
`tunesmith generate` or the server sends is, token for token, the prompt the model was trained to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tunesmith.config import Config, DataConfig, load_config
from tunesmith.data.templates import Renderer
from tunesmith.models.loading import pick_dtype


@dataclass(frozen=True)
class TrainedSettings:
    prompt_format: str = "auto"
    max_length: int = DataConfig().max_length
    system: str | None = None  # the system message every training row began with; None when there was none
    dtype: str = "auto"  # model.dtype: scoring and serving dtype (pick_dtype)

    @classmethod
    def of_config(cls, cfg: Config) -> TrainedSettings:
        return cls(cfg.data.prompt_format, cfg.data.max_length, shared_system(cfg), cfg.model.dtype)

    @classmethod
    def of_run(cls, run: Path) -> TrainedSettings:
        """The settings of a run folder (or of the run that holds a final/ folder); the defaults a run would have
        used for a model folder with no config.yaml beside it."""
        run = Path(run)
        folder = run.parent if run.name == "final" else run
        saved = folder / "config.yaml"
        return cls.of_config(load_config(saved)) if saved.is_file() else cls()

    def renderer(self, tokenizer) -> Renderer:
        return Renderer(tokenizer, self.prompt_format, self.max_length, self.system)

    def weight_dtype(self, device: torch.device) -> torch.dtype:
        return pick_dtype(self.dtype, device)


def shared_system(cfg: Config) -> str | None:
    """The system message of the training datasets when they all share one (a mixture whose datasets differ
    has no single prompt to reproduce, so none is added and a caller must give one)."""
    systems = {spec.system for spec in cfg.data.train}
    return systems.pop() if len(systems) == 1 else None

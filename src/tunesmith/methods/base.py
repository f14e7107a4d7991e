"""The `Method` protocol: everything a training method decides, so that the recipe, plan, verify and eval never
branch on which method a run uses.

A method decides how rows are encoded, how a micro-batch is built from them, which model is trained (a causal LM,
a sequence classifier, ...), the loss (as *sums*, which the loop normalises over the accumulation window), how the
base and the tuned model are evaluated on held-out rows, and what `final/` holds. Everything else (the loop, its
checkpoints and resume, precision, adapters, the run directory) is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from torch import nn

from tunesmith.config import Config, TrainConfig
from tunesmith.data.templates import Encoded, Renderer, RowEncoder
from tunesmith.rundir import RunDir
from tunesmith.training.chunked_ce import CE_CHUNK
from tunesmith.training.objectives import Batch, Objective

if TYPE_CHECKING:
    from tunesmith.models.loading import LoadedBase
    from tunesmith.training.prepare import Prepared


@dataclass
class EvalContext:
    """What evaluating a model on a run's held-out rows needs: the rows (encoded, and as examples for generation),
    the renderer that prompts them as the run trains, and where to compute."""

    cfg: Config
    renderer: Renderer
    prepared: Prepared
    device: torch.device
    log: Callable[[str], object] = print

    @property
    def pad_id(self) -> int:
        return self.renderer.tokenizer.pad_token_id


class Method(Protocol):
    """One training method (methods/<type>.py), built from the whole config; its own settings are `cfg.method`."""

    generative: ClassVar[bool]  # final/ answers by generating text (chat, completions, side-by-side samples)
    peft_task_type: ClassVar[str]  # what a LoRA adapter wraps: "CAUSAL_LM", "SEQ_CLS"
    speed_options: ClassVar[tuple[str, ...]]  # the train speed options that apply (tunesmith verify checks them)
    trains_every_row: ClassVar[bool]  # every row that encodes trains something (the audit need not check)

    def __init__(self, cfg: Config) -> None: ...

    def encoder(self, renderer: Renderer) -> RowEncoder:
        """How a source row becomes model input (token labels, a class index, ...)."""
        ...

    def packs(self, train: TrainConfig) -> bool:
        """Whether micro-batches are packed into sequences of data.max_length tokens (training/packing.py) under
        these train settings (train.packing asks for it; a method that cannot pack says False)."""
        ...

    def attach(self, prepared: Prepared, base: LoadedBase, device: torch.device, autocast, log) -> None:
        """Anything the rows need from the base model before training, read once (DPO: the reference
        log-probabilities of every pair). `base.model` is the base causal LM, before any adapter or update."""
        ...

    def make_batch(self, rows: list[Encoded], pad_id: int, pack_to: int | None = None) -> Batch:
        """One micro-batch of encoded rows, as the loop and evaluation feed it to the model."""
        ...

    def build_model(self, base: LoadedBase, out: RunDir | None, device: torch.device, dtype: torch.dtype) -> nn.Module:
        """The model this method trains, before any adapter, from the loaded base. `out` is the run folder, for a
        method whose final/ needs its base written beside it; None when nothing may be written (plan, verify)."""
        ...

    def objective(self, train: list[Encoded], log: Callable[[str], object], chunk: int | None = CE_CHUNK) -> Objective:
        """The loss over the training rows: summed parts, normalised by the loop. `chunk`: positions per chunk where
        the method computes its loss in chunks (None: in one piece; tunesmith verify compares the two)."""
        ...

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict:
        """Held-out metrics of `model` as it is now (before, during and after training): at least `loss`."""
        ...

    def base_eval(self, model: nn.Module, base_lm: nn.Module, ctx: EvalContext) -> dict:
        """eval/base.json: the base's numbers on the held-out rows, and every baseline the tuned model must beat.
        `model` is the model this method trains, untrained; `base_lm` the base causal LM it was built from."""
        ...

    def tuned_eval(self, model: nn.Module, base_eval: dict, final: Path, ctx: EvalContext) -> dict:
        """eval/tuned.json: the tuned model's numbers on the same rows, compared with the strongest baseline."""
        ...

    def write_final(
        self,
        model: nn.Module,
        tokenizer,
        folder: Path,
        stop_ids: list[int],
        initial: Path | None = None,
        state: dict | None = None,
    ) -> None:
        """Save what final/ holds into `folder`; it must load with transformers (and peft, for an adapter) alone.
        `initial`: a pissa/olora adapter as initialised, which the saved adapter is converted against
        (models/loading.save_weights); `state`: the whole weights, when the model in memory is sharded (FSDP)."""
        ...

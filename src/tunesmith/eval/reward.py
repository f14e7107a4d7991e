"""Scoring answers with a finished reward-model run (methods/reward.py): the judge of generated answers
(eval.judge) and of `POST /v1/rewards`.

    scorer = load_reward_model("runs/hh-reward")
    scorer.score(["How do I boil an egg?"], ["Put it in boiling water for 8 minutes."])   # [1.73]

An answer is scored as the reward model was trained: the prompt as a user turn and the answer as the assistant's
reply, rendered by the run's own chat template and prompt format (the system message its training data shared),
and read at the last token by the sequence-classification head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import Kind
from tunesmith.data.formats import Example, RowError
from tunesmith.data.templates import IGNORE, Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.models.loading import pick_device
from tunesmith.models.trained import NoFinishedModel, load_run, model_kind
from tunesmith.rundir import RunDir
from tunesmith.training.objectives import collate


class NotARewardModel(TunesmithError):
    """The run asked to score answers has no reward model."""


@dataclass
class RewardScorer:
    model: nn.Module
    renderer: Renderer
    device: torch.device
    name: str = ""

    def ids(self, prompt: str | list[dict], answer: str) -> list[int]:
        """The token ids the head reads for one answer: a prompt (text, or the conversation so far) and the reply."""
        context = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        example = Example(Kind.chat, "answer", 1, messages=[*context, {"role": "assistant", "content": answer}])
        encoded = self.renderer.encode(example)  # the run's system message, as in training
        if isinstance(encoded, RowError):
            raise TunesmithError(f"cannot score this answer: {encoded.reason}")
        return encoded.input_ids

    @torch.no_grad()
    def score(self, prompts: list, answers: list[str], batch: int = 8) -> list[float]:
        """One score per (prompt, answer): higher is preferred."""
        rows = [self.ids(p, a) for p, a in zip(prompts, answers, strict=True)]
        pad_id = self.renderer.tokenizer.pad_token_id
        out: list[float] = []
        for start in range(0, len(rows), batch):
            encoded = [_ids_only(ids) for ids in rows[start : start + batch]]
            padded = collate(encoded, pad_id).to(self.device)
            logits = self.model(input_ids=padded.input_ids, attention_mask=padded.attention_mask, use_cache=False)
            out += logits.logits.float()[:, 0].tolist()
        return out


def _ids_only(ids: list[int]) -> Encoded:
    return Encoded(ids, [IGNORE] * len(ids), "answer", 0)


def is_reward_model(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return getattr(config, "num_labels", 0) == 1 and getattr(config, "problem_type", None) == "regression"


def load_reward_model(run: str | Path, device: torch.device | None = None) -> RewardScorer:
    """final/ of a reward-model run, with the renderer and system message its pairs were encoded with."""
    device = device or pick_device()
    run_dir = RunDir.at(run)
    try:
        kind = model_kind(run_dir.model_dir)
    except NoFinishedModel:
        raise NotARewardModel(f"{run}: no finished model here (expected final/ with adapter_config.json)") from None
    if kind != "classifier":
        raise NotARewardModel(f"{run}: not a reward-model run (method.type: reward_model)")
    trained = load_run(run_dir, device, "auto")
    if not is_reward_model(trained.model):
        raise NotARewardModel(f"{run}: a classification head, not a reward model (method.type: reward_model)")
    renderer = trained.settings.renderer(trained.tokenizer)
    return RewardScorer(trained.model.eval(), renderer, device, str(run))

"""A reward model (`method: {type: reward_model}`): the base with a scalar head that scores an answer to a prompt,
trained on preference pairs so the chosen answer scores above the rejected one (Bradley-Terry:
loss = -log sigmoid(r_chosen - r_rejected), plus center x (r_chosen + r_rejected)^2 when set).

    tunesmith train examples/hh-rlhf-reward.yaml     # rows: prompt / chosen / rejected, or HH-RLHF transcripts

Rows are the preference methods' pairs (data/pairs.py: the same rendering, prompt and row errors); each side is
scored at its last token by transformers' own sequence-classification forward (one label, `problem_type:
regression`), so `final/` scores with transformers (and peft) alone, exactly as `POST /v1/rewards` does. Training
packs the sides of a micro-batch's pairs as a classification head packs its rows (`train.packing`, the default): the
decoder runs once over the packed sides, each attending only to itself, and the head reads each side's last token,
the hidden state the padded forward pools (`tunesmith verify` and the tests compare the two). Held-out pairs are
scored padded, through the same forward `final/` serves with.

Proof of gain on the held-out pairs: ranking accuracy (the chosen answer scored higher) against the strongest fair
baseline that needs no training, the base causal LM's own ranking (the chosen answer likelier per token), with a
paired 95% interval; the untrained head (chance) is where the loss curve starts. The model judges other runs'
answers (eval.judge, methods/preference.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.config import Config
from tunesmith.data.pairs import PairEncoder
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.eval.bootstrap import paired_bootstrap_scores
from tunesmith.faults import fault
from tunesmith.methods.base import EvalContext
from tunesmith.methods.classifier import Classifier
from tunesmith.training.objectives import LossParts, head_logits
from tunesmith.training.preference import PairBatch, make_scored_pair_batch, read_logprobs

LABEL = "reward"  # the head's one output, as final/'s config names it
METRIC_NAMES = {
    "loss": "reward model loss (per pair)",
    "accuracy": "ranking accuracy (chosen scored higher)",
    "reward_margin": "mean score margin (chosen - rejected)",
}
BASELINE = "the base causal LM's ranking: the chosen answer likelier per token than the rejected one"


class RewardObjective:
    """Bradley-Terry on each pair's two scores, summed (the loop averages per pair)."""

    def __init__(self, center: float = 0.0):
        self.center = center

    def scores(self, model: nn.Module, batch: PairBatch) -> torch.Tensor:
        """(pairs, 2) scores, columns chosen and rejected."""
        return head_logits(model, batch).float().view(-1, 2)

    def losses(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        margin = scores[:, 0] - scores[:, 1]
        return -F.logsigmoid(margin) + self.center * scores.sum(1) ** 2, margin

    def __call__(self, model: nn.Module, batch: PairBatch) -> LossParts:
        losses, margin = self.losses(self.scores(model, batch))
        return LossParts(losses.sum(), batch.pairs, int((margin.detach() > 0).sum()))


@torch.no_grad()
def score_pairs(
    model: nn.Module, rows: list[Encoded], objective: RewardObjective, pad_id: int, device, batch: int
) -> torch.Tensor:
    """(pairs, 2) scores of held-out pairs, in eval mode."""
    was_training = model.training
    model.eval()
    out = [
        objective.scores(model, make_scored_pair_batch(rows[i : i + batch], pad_id).to(device))
        for i in range(0, len(rows), batch)
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 2)


class RewardModel(Classifier):
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.settings = cfg.method  # type: ignore[assignment]
        self.labels = [LABEL]
        self.class_weights = None
        self._objective = RewardObjective(cfg.method.center)  # type: ignore[union-attr]

    def encoder(self, renderer: Renderer) -> PairEncoder:
        return PairEncoder(renderer)

    def make_batch(self, rows: list[Encoded], pad_id: int, pack_to: int | None = None) -> PairBatch:
        return make_scored_pair_batch(rows, pad_id, pack_to)

    def objective(
        self, train: list[Encoded], log: Callable[[str], object], chunk: int | None = None
    ) -> RewardObjective:
        return self._objective

    def _metrics(self, model: nn.Module, ctx: EvalContext) -> tuple[dict, list[float]]:
        scores = score_pairs(model, ctx.prepared.eval, self._objective, ctx.pad_id, ctx.device, ctx.cfg.eval.batch_size)
        losses, margin = self._objective.losses(scores)
        n = max(1, len(margin))
        ranks = (margin > 0).float().tolist()
        metrics = {
            "loss": float(losses.sum()) / n,
            "accuracy": sum(ranks) / n,
            "reward_margin": float(margin.sum()) / n,
            "rows": len(ranks),
            "tokens": sum(len(s.input_ids) for r in ctx.prepared.eval for s in r.sides),
        }
        return metrics, ranks

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict:
        fault("eval")
        return self._metrics(model, ctx)[0]

    def base_eval(self, model: nn.Module, base_lm: nn.Module, ctx: EvalContext) -> dict:
        """The untrained head (chance: where the loss starts) and the base causal LM's own ranking of the same pairs,
        the baseline the tuned reward model is compared with."""
        cfg = ctx.cfg
        metrics, _ = self._metrics(model, ctx)
        read = read_logprobs(base_lm, ctx.prepared.eval, ctx.pad_id, ctx.device, None, cfg.eval.batch_size)
        prefers = [float(c / max(1, nc) > r / max(1, nr)) for (c, r), (nc, nr) in read]
        baseline = sum(prefers) / max(1, len(prefers))
        ctx.log(
            f"base model: untrained head ranking accuracy {metrics['accuracy']:.3f}; the base LM's own ranking "
            f"(likelier per token) {baseline:.3f} on {len(prefers)} held-out pairs"
        )
        return {
            "model": cfg.model.base,
            "objective": "head",
            "metrics": metrics,
            "metric_names": METRIC_NAMES,
            "metrics_method": "the base model with its untrained (randomly initialised) scalar head: chance level",
            "prefers": prefers,
            "baseline": {"name": BASELINE, "accuracy": baseline},
            "samples": [],
        }

    def tuned_eval(self, model: nn.Module, base_eval: dict, final: Path, ctx: EvalContext) -> dict:
        metrics, ranks = self._metrics(model, ctx)
        result = {
            "model": str(final),
            "objective": "head",
            "metrics": metrics,
            "metric_names": METRIC_NAMES,
            "samples": [],
        }
        if base_eval.get("prefers"):
            gain = paired_bootstrap_scores(base_eval["prefers"], ranks, seed=ctx.cfg.train.seed)
            result["preference"] = {
                **gain.as_dict(),
                "base_method": BASELINE,
                "tuned_method": "the reward model's scores",
            }
            ctx.log(
                f"ranking accuracy: base LM {gain.base:.3f} -> reward model {gain.tuned:.3f}, "
                f"{gain.diff:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}] (paired bootstrap, 95%)"
            )
        return result

"""Preference tuning (`method: {type: dpo | simpo | orpo}`): the causal LM learns to prefer the chosen answer of
each (prompt, chosen, rejected) pair, on the same loop, packing, checkpoints, resume, plan and verify as SFT.

    method: {type: dpo, beta: 0.1}                    # loss: sigmoid (default), ipo or hinge; label_smoothing
    method: {type: simpo, beta: 2.0, gamma: 1.0}      # reference-free, length-normalised
    method: {type: orpo, beta: 0.1}                   # reference-free: SFT on chosen + odds-ratio term

Rows are preference pairs (data/pairs.py); the losses are in training/preference.py. DPO's reference is the model
the run starts from, before any update: the base (or the parent run, with model.base: runs/sft-run) with no
adapter, i.e. the same weights a LoRA run trains on with its adapter switched off. Its log-probabilities of every
pair are read once, before the first step (training pairs in the run's precision, held-out pairs as evaluation
reads them), and kept with the rows, so no second model is held in memory and no epoch recomputes them; a resumed
run reads them from the base again, which gives the same numbers.

Proof of gain on the held-out pairs, base vs tuned: preference accuracy (the share of pairs whose chosen answer has
the higher mean log-probability per token, the same measure for both, with a paired 95% interval); for DPO also its
ranking accuracy (the implicit reward, the log-ratio to the reference that the loss trains, ranks the chosen answer
first) against the base's ranking per token, paired (`reward_ranking`: the base's own implicit reward is 0 for every
pair, so its likelihood is its best ranking without training); the implicit reward accuracy and margin, the chosen
and rejected log-probabilities (a falling chosen log-probability is reported: it is a known failure of DPO), the
length of generated answers (length bias), side-by-side answers and forgetting on the general probes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import Kind, TrainConfig
from tunesmith.data.formats import Example
from tunesmith.data.pairs import KTOEncoder, PairEncoder, with_kl_sides
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.eval.bootstrap import paired_bootstrap_scores
from tunesmith.eval.general import forgetting
from tunesmith.eval.reward import load_reward_model
from tunesmith.eval.runner import generate_answers
from tunesmith.faults import fault
from tunesmith.methods.base import EvalContext
from tunesmith.methods.sft import SFT
from tunesmith.models.loading import LoadedBase
from tunesmith.models.registry import cache_root, weights_signature
from tunesmith.rundir import write_text
from tunesmith.training.chunked_ce import CE_CHUNK
from tunesmith.training.loop import data_fingerprint
from tunesmith.training.preference import PairBatch, PreferenceObjective, make_pair_batch, pair_losses, read_logprobs

METRIC_NAMES = {
    "loss": "preference loss (per pair)",
    "preference_accuracy": "preference accuracy (chosen likelier per token)",
    "reward_accuracy": "implicit reward accuracy",
    "reward_margin": "implicit reward margin",
    "chosen_logp": "chosen log-probability (sum)",
    "rejected_logp": "rejected log-probability (sum)",
}
KTO_METRIC_NAMES = {
    "loss": "kto loss (per row)",
    "signed_logp": "signed log-probability per token (+ desirable, - undesirable)",
    "reward_accuracy": "implicit reward on the label's side",
    "reward_margin": "implicit reward margin (label-signed, minus the KL baseline)",
    "desirable_logp": "desirable answers' log-probability (sum)",
    "undesirable_logp": "undesirable answers' log-probability (sum)",
}
# What each kind of run's proof of gain measures per held-out row (the paired bootstrap compares base and tuned).
PROOF = {
    "pairs": ("preference accuracy", "the chosen answer likelier per token than the rejected one"),
    "kto": (
        "signed log-probability per token",
        "+ per-token log-probability of a desirable answer, - of an undesirable one",
    ),
}


class Preference(SFT):
    trains_every_row = True  # a pair whose answer is cut to nothing is a row error (data/pairs.py)

    @property
    def kto(self) -> bool:
        return self.cfg.method.type == "kto"

    def encoder(self, renderer: Renderer) -> PairEncoder:
        return KTOEncoder(renderer, self.cfg.method.label_field) if self.kto else PairEncoder(renderer)

    def packs(self, train: TrainConfig) -> bool:
        return train.packing

    def make_batch(self, rows: list[Encoded], pad_id: int, pack_to: int | None = None) -> PairBatch:
        return make_pair_batch(rows, pad_id, pack_to)

    def objective(
        self, train: list[Encoded], log: Callable[[str], object], chunk: int | None = CE_CHUNK
    ) -> PreferenceObjective:
        return PreferenceObjective(self.cfg.method, chunk)

    @property
    def needs_reference(self) -> bool:
        return self.cfg.method.type in ("dpo", "kto")

    def attach(self, prepared, base: LoadedBase, device: torch.device, autocast, log) -> None:
        """DPO and KTO: the reference log-probabilities of every pair (for KTO every row and its mismatched KL
        side, paired here), read from the base before training (training rows as training computes them, held-out
        rows as evaluation does), or from the cache when read before."""
        if not self.needs_reference:
            return
        cfg = self.cfg
        if self.kto:
            with_kl_sides(prepared.train, cfg.data.max_length)
            with_kl_sides(prepared.eval, cfg.data.max_length)
        pack_to = cfg.data.max_length if self.packs(cfg.train) else None
        micro = cfg.train.micro_batch_size
        for name, rows, precision, batch in (
            ("training", prepared.train, autocast, micro),
            ("held-out", prepared.eval, None, cfg.eval.batch_size),
        ):
            key = hashlib.sha256(
                json.dumps(
                    [
                        str(base.weights_dir),
                        weights_signature(base.weights_dir),
                        str(next(base.model.parameters()).dtype),
                        str(precision),
                        data_fingerprint(rows),
                        batch,
                        pack_to,
                    ]
                ).encode()
            ).hexdigest()[:24]
            cached = cache_root() / "reference" / f"{key}.json"
            if cached.is_file():
                reference = [tuple(x) for x in json.loads(cached.read_text(encoding="utf-8"))]
                log(f"reference log-probabilities of {len(rows)} {name} pairs: read from {cached}")
            else:
                read = read_logprobs(base.model, rows, base.tokenizer.pad_token_id, device, precision, batch, pack_to)
                reference = [logp for logp, _ in read]
                write_text(cached, json.dumps(reference))
                log(f"reference log-probabilities of {len(rows)} {name} pairs: read from the base (cached)")
            for row, logp in zip(rows, reference, strict=True):
                row.reference = logp

    # --- evaluation ---------------------------------------------------------------------------------------------

    def _pair_stats(self, model: nn.Module, ctx: EvalContext) -> dict[str, list[float]]:
        """Per held-out row: loss, implicit reward margin, the log-probabilities of the answers that should rise
        ("good": chosen or desirable) and fall ("bad"), token counts, and the per-row score of the proof of gain."""
        cfg, rows = ctx.cfg, ctx.prepared.eval
        pack_to = cfg.data.max_length if self.packs(cfg.train) else None
        read = read_logprobs(model, rows, ctx.pad_id, ctx.device, None, cfg.eval.batch_size, pack_to)
        logp = torch.tensor([x for x, _ in read], dtype=torch.float32).view(-1, 2)
        counts = torch.tensor([n for _, n in read], dtype=torch.float32).view(-1, 2)
        reference = desirable = None
        if self.needs_reference:
            reference = torch.tensor([r.reference for r in rows], dtype=torch.float32).view(-1, 2)
        if self.kto:
            desirable = torch.tensor([bool(r.desirable) for r in rows], dtype=torch.bool)
        losses, margin = pair_losses(self.cfg.method, logp, counts, reference, desirable)
        mean = logp / counts.clamp(min=1)
        stats = {"loss": losses.tolist(), "margin": margin.tolist()}
        if desirable is not None:  # KTO: one answer per row; column 1 is the KL side, no answer of the row
            answer = logp[:, 0].tolist()
            stats["good"] = [x for x, d in zip(answer, desirable.tolist(), strict=True) if d]
            stats["bad"] = [x for x, d in zip(answer, desirable.tolist(), strict=True) if not d]
            stats["proof"] = torch.where(desirable, mean[:, 0], -mean[:, 0]).tolist()
            stats["tokens"] = counts[:, 0].tolist()
        else:
            stats["good"], stats["bad"] = logp[:, 0].tolist(), logp[:, 1].tolist()
            stats["proof"] = (mean[:, 0] > mean[:, 1]).float().tolist()
            stats["tokens"] = counts.sum(1).tolist()
        return stats

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict:
        fault("eval")
        stats = self._pair_stats(model, ctx)
        return _summary(stats, self.kto)

    def base_eval(self, model: nn.Module, base_lm: nn.Module, ctx: EvalContext) -> dict:
        stats = self._pair_stats(model, ctx)
        metrics = _summary(stats, self.kto)
        result = {
            "model": ctx.cfg.model.base,
            "metrics": metrics,
            "metric_names": KTO_METRIC_NAMES if self.kto else METRIC_NAMES,
            "prefers": stats["proof"],
            "samples": pair_samples(model, ctx),
        }
        if ctx.cfg.eval.judge:
            result["judge_answers"] = judge_answers(model, ctx)
        if ctx.cfg.eval.general:
            result["general"] = self.general(model, ctx)
        what = PROOF["kto" if self.kto else "pairs"][0]
        ctx.log(
            f"base model: {what} {sum(stats['proof']) / max(1, len(stats['proof'])):.3f} on {metrics['rows']} "
            f"held-out rows, {self.cfg.method.type} loss {metrics['loss']:.4f}"
        )
        return result

    def tuned_eval(self, model: nn.Module, base_eval: dict, final: Path, ctx: EvalContext) -> dict:
        cfg = ctx.cfg
        stats = self._pair_stats(model, ctx)
        result = {
            "model": str(final),
            "metrics": _summary(stats, self.kto),
            "metric_names": KTO_METRIC_NAMES if self.kto else METRIC_NAMES,
            "samples": pair_samples(model, ctx),
        }
        if base_eval.get("prefers"):
            gain = paired_bootstrap_scores(base_eval["prefers"], stats["proof"], seed=cfg.train.seed)
            what, how = PROOF["kto" if self.kto else "pairs"]
            result["preference"] = {**gain.as_dict(), "what": what, "base_method": how, "tuned_method": how}
            ctx.log(
                f"{what}: base {gain.base:.3f} -> tuned {gain.tuned:.3f}, "
                f"{gain.diff:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}] (paired bootstrap, 95%)"
            )
            if self.needs_reference and not self.kto:
                result["reward_ranking"] = self._reward_ranking(base_eval["prefers"], stats["margin"], how, ctx)
        result["lengths"] = {
            "base": _mean_words(base_eval.get("samples", [])),
            "tuned": _mean_words(result["samples"]),
        }
        if cfg.eval.judge and base_eval.get("judge_answers"):
            result["judge_answers"] = judge_answers(model, ctx)
            result["win_rate"] = win_rate(base_eval["judge_answers"], result["judge_answers"], ctx)
        good = "desirable_logp" if self.kto else "chosen_logp"
        if result["metrics"][good] < base_eval["metrics"][good]:
            ctx.log(
                f"note: the {'desirable' if self.kto else 'chosen'} answers' log-probability fell during training "
                f"({base_eval['metrics'][good]:.2f} -> {result['metrics'][good]:.2f}): the model prefers them by "
                "making the others unlikelier, a known failure of preference tuning"
            )
        if cfg.eval.general and "general" in base_eval:
            result["general"] = self.general(model, ctx)
            result["forgetting"] = forgetting(base_eval["general"], result["general"], cfg.train.seed)
        return result

    def _reward_ranking(self, base_prefers: list[float], margins: list[float], how: str, ctx: EvalContext) -> dict:
        """DPO's own judgement of each held-out pair, its implicit reward (the log-ratio to the reference, what the
        loss trains), against the base's best ranking with no training (its likelihood per token: the base's own
        implicit reward is 0 for every pair, so it ranks nothing), paired. SimPO's and ORPO's rewards rank as their
        likelihood per token does, so for them `preference` is this comparison already."""
        ranks = [float(m > 0) for m in margins]
        judged = paired_bootstrap_scores(base_prefers, ranks, seed=ctx.cfg.train.seed)
        ctx.log(
            f"ranking accuracy: base LM (likelier per token) {judged.base:.3f} -> tuned implicit reward "
            f"{judged.tuned:.3f}, {judged.diff:+.3f} [{judged.low:+.3f}, {judged.high:+.3f}] (paired bootstrap, 95%)"
        )
        return {
            **judged.as_dict(),
            "what": "ranking accuracy",
            "base_method": how,
            "tuned_method": f"the tuned model's implicit reward ({self.cfg.method.type}: log-ratio to the reference) "
            "ranks the chosen answer first",
        }


def _summary(stats: dict[str, list[float]], kto: bool = False) -> dict:
    n = max(1, len(stats["loss"]))

    def mean(values: list[float]) -> float:
        return sum(values) / max(1, len(values))

    metrics = {
        "loss": sum(stats["loss"]) / n,
        "reward_accuracy": sum(m > 0 for m in stats["margin"]) / n,
        "reward_margin": sum(stats["margin"]) / n,
        "rows": len(stats["loss"]),
        "tokens": int(sum(stats["tokens"])),
    }
    if kto:
        return {**metrics, "signed_logp": mean(stats["proof"]), "desirable_logp": mean(stats["good"]),
                "undesirable_logp": mean(stats["bad"])}  # fmt: skip
    return {**metrics, "preference_accuracy": mean(stats["proof"]), "chosen_logp": mean(stats["good"]),
            "rejected_logp": mean(stats["bad"])}  # fmt: skip


def _mean_words(samples: list[dict]) -> float | None:
    return sum(len(s["answer"].split()) for s in samples) / len(samples) if samples else None


def _context(example: Example) -> list[dict]:
    """The conversation an answer of this row replies to: a pair's prompt, or a KTO row's turns before its answer."""
    if example.kind is Kind.chat:
        return list(example.messages or [])[:-1]
    if example.kind is Kind.preference and example.messages:
        return example.messages
    return [{"role": "user", "content": example.prompt or ""}]


def _reference(example: Example) -> str:
    """The row's own answer, shown beside the models': a pair's chosen answer, a KTO row's answer."""
    if example.kind is Kind.chat:
        return (example.messages or [{"content": ""}])[-1]["content"]
    return example.chosen if example.kind is Kind.preference else example.completion or ""


def _contexts(ctx: EvalContext, n: int) -> tuple[list, list[list[dict]]]:
    """The first `n` held-out rows and the conversations their answers reply to."""
    examples = [ex for ex, _ in ctx.prepared.eval_examples[:n]]
    return examples, [_context(ex) for ex in examples]


def _answer(model: nn.Module, ctx: EvalContext, contexts: list[list[dict]]) -> list[str]:
    """Greedy answers, as many tokens as eval.max_new_tokens, rendered as the run renders a prompt."""
    renderer = ctx.renderer
    answers: list[str] = []
    for start in range(0, len(contexts), ctx.cfg.eval.batch_size):
        answers += generate_answers(
            model,
            renderer.tokenizer,
            [renderer.prompt_ids(c) for c in contexts[start : start + ctx.cfg.eval.batch_size]],
            ctx.cfg.eval.max_new_tokens,
            ctx.device,
            renderer.stop_ids(),
        )
    return answers


def pair_samples(model: nn.Module, ctx: EvalContext) -> list[dict]:
    """Greedy answers to the first held-out prompts, beside the pair's chosen answer."""
    examples, contexts = _contexts(ctx, ctx.cfg.eval.samples)
    answers = _answer(model, ctx, contexts)
    return [
        {"prompt": c[-1]["content"], "reference": _reference(ex), "answer": a}
        for c, ex, a in zip(contexts, examples, answers, strict=True)
    ]


def judge_answers(model: nn.Module, ctx: EvalContext) -> list[str]:
    """The answers eval.judge scores: greedy, to the first eval.judge_rows held-out prompts."""
    return _answer(model, ctx, _contexts(ctx, ctx.cfg.eval.judge_rows)[1])


def win_rate(base_answers: list[str], tuned_answers: list[str], ctx: EvalContext) -> dict:
    """The share of held-out prompts whose tuned answer the judge scores above the base's (a tie counts half),
    with a 95% bootstrap interval; the judge's scores are kept beside."""
    cfg = ctx.cfg
    scorer = load_reward_model(cfg.eval.judge, ctx.device)
    contexts = _contexts(ctx, len(base_answers))[1]
    base_scores = scorer.score(contexts, base_answers, cfg.eval.batch_size)
    tuned_scores = scorer.score(contexts, tuned_answers, cfg.eval.batch_size)
    wins = [1.0 if t > b else 0.5 if t == b else 0.0 for b, t in zip(base_scores, tuned_scores, strict=True)]
    versus_even = paired_bootstrap_scores([0.5] * len(wins), wins, seed=cfg.train.seed)
    result = {
        "judge": cfg.eval.judge,
        "rows": len(wins),
        "win_rate": versus_even.tuned,
        "low": 0.5 + versus_even.low,
        "high": 0.5 + versus_even.high,
        "base_score": sum(base_scores) / max(1, len(wins)),
        "tuned_score": sum(tuned_scores) / max(1, len(wins)),
    }
    ctx.log(
        f"judged by {cfg.eval.judge}: the tuned answer wins {result['win_rate']:.3f} "
        f"[{result['low']:.3f}, {result['high']:.3f}] of {len(wins)} held-out prompts against the base's"
    )
    return result

"""Forgetting: how much general ability a run cost, measured the same way on the base and the tuned model, per probe
family, with per-row scores so base and tuned can be compared with paired intervals (forgetting()).

Families (each a list of per-row scores):
- knowledge: 200 short general questions written for this project (assets/general_qa.jsonl), answered greedily; a
  row scores 1 when its answer word appears as a whole word in the first line of the answer (small instruction
  models wrap answers in a sentence: "The capital of France is Paris.").
- text: 24 paragraphs of general, encyclopedic text written for this project; a row's score is its mean negative
  log-likelihood per token (the family's perplexity is exp of the token-weighted mean).
With `eval.probe_data` (a folder laid out as ../shared/data), three more, from the *last* rows of each file so that
runs training on a file's first rows are not probed on them:
- chat: the last 32 helpful-base conversations of HH-RLHF: mean NLL per token of the assistant turns.
- reading: the last 32 XQuAD questions: greedy answer to the paragraph and question, token F1 against the answers.
- arithmetic: the last 32 GSM8K test problems: mean NLL per token of the worked solution (a 135M model solves almost
  none, so the likelihood of a correct solution is the sensitive measure).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import DatasetSpec, Kind
from tunesmith.data.formats import Example
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.eval.bootstrap import paired_bootstrap_scores
from tunesmith.eval.likelihood import sequence_logprobs
from tunesmith.eval.metrics import squad_f1
from tunesmith.eval.parse import first_line
from tunesmith.eval.runner import generate_answers

PROBE_ROWS = 32  # rows per family read from probe_data
# Families whose score is a negative log-likelihood: lower is better, and forgetting is an increase.
NLL_FAMILIES = ("text", "chat", "arithmetic")


@dataclass
class Family:
    name: str
    metric: str  # accuracy | f1 | nll
    scores: list[float]
    tokens: list[int] = field(default_factory=list)  # nll families: tokens per row (perplexity weights them)

    @property
    def value(self) -> float:
        if self.metric == "nll" and self.tokens:
            return sum(s * t for s, t in zip(self.scores, self.tokens, strict=True)) / max(1, sum(self.tokens))
        return sum(self.scores) / max(1, len(self.scores))

    def as_dict(self) -> dict:
        out = {"metric": self.metric, "value": self.value, "rows": len(self.scores), "scores": self.scores}
        if self.metric == "nll":
            out |= {"perplexity": math.exp(self.value), "tokens": self.tokens}
        return out


@dataclass
class GeneralAbility:
    families: dict[str, Family]

    def as_dict(self) -> dict:
        """The record eval/*.json keeps (`general`); text_perplexity and qa_accuracy stay for readers of older runs."""
        text, knowledge = self.families["text"], self.families["knowledge"]
        return {
            "text_perplexity": math.exp(text.value),
            "text_tokens": sum(text.tokens),
            "qa_accuracy": knowledge.value,
            "qa_rows": len(knowledge.scores),
            "families": {name: family.as_dict() for name, family in self.families.items()},
        }


def _asset_rows(name: str) -> list[dict]:
    text = (resources.files("tunesmith") / "assets" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def answered(answer: str, reference: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(reference.lower())}(?!\w)", first_line(answer).lower()) is not None


def _nll_family(name: str, model, renderer: Renderer, examples: list[Example], batch_size: int, device) -> Family:
    encoded = [e for e in (renderer.encode(x) for x in examples) if isinstance(e, Encoded)]
    pairs = sequence_logprobs(model, encoded, renderer.tokenizer.pad_token_id, batch_size, device)
    return Family(name, "nll", [-s / max(1, n) for s, n in pairs], [n for _, n in pairs])


def _answers(model, renderer: Renderer, prompts: list[str], max_new_tokens: int, device) -> list[str]:
    ids = [renderer.prompt_ids([{"role": "user", "content": p}]) for p in prompts]
    out: list[str] = []
    for start in range(0, len(ids), 20):
        out += generate_answers(
            model, renderer.tokenizer, ids[start : start + 20], max_new_tokens, device, renderer.stop_ids()
        )
    return out


@functools.cache
def probe_examples(probe_data: Path | None) -> dict[str, list[Example]]:
    """The rows of the families read from files (the bundled ones are read in general_ability), read once per process:
    a forgetting budget probes at every evaluation."""
    if probe_data is None:
        return {}
    specs = {
        "chat": DatasetSpec(
            path=str(probe_data / "hh_rlhf" / "helpful-base" / "test.jsonl.gz"),
            kind=Kind.chat,
            fields={"chosen": "messages"},
        ),
        "reading": DatasetSpec(
            path=str(probe_data / "xquad_en" / "xquad.en.json"),
            kind=Kind.completion,
            template="{context}\n\nAnswer with the shortest span of the text above.\nQuestion: {question}",
            fields={"answer": "completion", "answers": "references"},
        ),
        "arithmetic": DatasetSpec(
            path=str(probe_data / "gsm8k" / "test.jsonl"),
            kind=Kind.completion,
            fields={"question": "prompt", "answer": "completion"},
        ),
    }
    return {name: load_dataset(spec).examples[-PROBE_ROWS:] for name, spec in specs.items()}


@torch.no_grad()
def general_ability(
    model: nn.Module, renderer: Renderer, batch_size: int, device: torch.device, probe_data: Path | None = None
) -> GeneralAbility:
    texts = [
        Example(Kind.text, "general_text.jsonl", i + 1, text=r["text"])
        for i, r in enumerate(_asset_rows("general_text.jsonl"))
    ]
    families = {"text": _nll_family("text", model, renderer, texts, batch_size, device)}
    qa = _asset_rows("general_qa.jsonl")
    answers = _answers(model, renderer, [r["prompt"] for r in qa], 8, device)
    scores = [float(answered(a, r["completion"])) for a, r in zip(answers, qa, strict=True)]
    families["knowledge"] = Family("knowledge", "accuracy", scores)
    loaded = probe_examples(probe_data)
    for name in ("chat", "arithmetic"):
        if loaded.get(name):
            families[name] = _nll_family(name, model, renderer, loaded[name], batch_size, device)
    if loaded.get("reading"):
        rows = loaded["reading"]
        replies = _answers(model, renderer, [r.prompt or "" for r in rows], 16, device)
        gold = [r.references or [r.completion or ""] for r in rows]
        families["reading"] = Family(
            "reading", "f1", [squad_f1(first_line(a), g) for a, g in zip(replies, gold, strict=True)]
        )
    return GeneralAbility(families)


def forgetting(base: dict, tuned: dict, seed: int = 0) -> dict:
    """Tuned minus base per family with a paired bootstrap 95% interval; for nll families an increase is forgetting,
    for accuracy and F1 a decrease. Keeps the two summary keys older records had."""
    out: dict = {key: tuned[key] - base[key] for key in ("text_perplexity", "qa_accuracy")}
    families = {}
    for name, t in (tuned.get("families") or {}).items():
        b = (base.get("families") or {}).get(name)
        if b is None or len(b["scores"]) != len(t["scores"]):
            continue
        if t["metric"] == "nll":  # token-weighted, as the family's value is
            weights = [n / max(1, sum(t["tokens"])) * len(t["tokens"]) for n in t["tokens"]]
            base_scores = [s * w for s, w in zip(b["scores"], weights, strict=True)]
            tuned_scores = [s * w for s, w in zip(t["scores"], weights, strict=True)]
        else:
            base_scores, tuned_scores = b["scores"], t["scores"]
        diff = paired_bootstrap_scores(base_scores, tuned_scores, seed=seed)
        families[name] = {
            "metric": t["metric"],
            "base": b["value"],
            "tuned": t["value"],
            "diff": t["value"] - b["value"],
            "low": diff.low,
            "high": diff.high,
            # worse beyond noise: the whole interval on the losing side
            "worse": diff.low > 0 if t["metric"] == "nll" else diff.high < 0,
        }
    out["families"] = families
    return out


def family_share(family: dict, max_drop: float, max_nll_increase: float) -> float:
    """The share of the forgetting budget one probe family's change (a forgetting() entry) used: 1.0 is the budget,
    0 or less when the family did not lose."""
    return family["diff"] / max_nll_increase if family["metric"] == "nll" else -family["diff"] / max_drop


def over_budget(result: dict, max_drop: float, max_nll_increase: float) -> list[str]:
    """The probe families whose change (tuned minus base, from forgetting()) is beyond the budget, in words."""
    over = []
    for name, f in (result.get("families") or {}).items():
        if family_share(f, max_drop, max_nll_increase) <= 1:
            continue
        if f["metric"] == "nll":
            over.append(f"{name} NLL {f['diff']:+.3f} per token (budget +{max_nll_increase:g})")
        else:
            over.append(f"{name} {f['metric']} {f['diff']:+.3f} (budget -{max_drop:g})")
    return over


def budget_share(result: dict, max_drop: float = 0.05, max_nll_increase: float = 0.1) -> float:
    """One number for forgetting (a search's objective, a table's column): the largest share of the budget any probe
    family used, 1.0 being the budget (eval.forgetting_budget's defaults unless given); 0 or less when none lost."""
    families = (result.get("families") or {}).values()
    return max((family_share(f, max_drop, max_nll_increase) for f in families), default=0.0)

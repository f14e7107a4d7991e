"""Forgetting: how much general ability a run cost, measured the same way on the base and the tuned model.

Two bundled probes, written for this project (src/tunesmith/assets): perplexity on 24 paragraphs of general,
encyclopedic text, and accuracy on 40 one-word general-knowledge questions. A question counts as answered when its
answer word appears as a whole word in the first line of the greedy answer, since small instruction models wrap
answers in a sentence ("The capital of France is Paris.").
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from importlib import resources

import torch
from torch import nn

from tunesmith.config import Kind
from tunesmith.data.formats import Example
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.eval.parse import first_line
from tunesmith.eval.runner import evaluate_loss, generate_answers
from tunesmith.training.objectives import CausalLMObjective


@dataclass
class GeneralAbility:
    text_perplexity: float
    text_tokens: int
    qa_accuracy: float
    qa_rows: int

    def as_dict(self) -> dict:
        return asdict(self)


def _asset_rows(name: str) -> list[dict]:
    text = (resources.files("tunesmith") / "assets" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def answered(answer: str, reference: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(reference.lower())}(?!\w)", first_line(answer).lower()) is not None


@torch.no_grad()
def general_ability(model: nn.Module, renderer: Renderer, batch_size: int, device: torch.device) -> GeneralAbility:
    texts = [
        Example(Kind.text, "general_text.jsonl", i + 1, text=r["text"])
        for i, r in enumerate(_asset_rows("general_text.jsonl"))
    ]
    encoded = [e for e in (renderer.encode(x) for x in texts) if isinstance(e, Encoded)]
    pad = renderer.tokenizer.pad_token_id
    loss = evaluate_loss(model, encoded, CausalLMObjective(), batch_size, pad, device)
    qa = _asset_rows("general_qa.jsonl")
    prompts = [renderer.prompt_ids([{"role": "user", "content": r["prompt"]}]) for r in qa]
    answers: list[str] = []
    for start in range(0, len(prompts), 20):
        answers += generate_answers(
            model, renderer.tokenizer, prompts[start : start + 20], 8, device, renderer.stop_ids()
        )
    correct = sum(answered(a, r["completion"]) for a, r in zip(answers, qa, strict=True))
    return GeneralAbility(loss.perplexity, loss.tokens, correct / max(1, len(qa)), len(qa))

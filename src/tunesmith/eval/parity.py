"""Is an exported model the model the run trained? Parity of an artifact against the run's own model (the adapter on
its base, fp32), on the run's held-out rows:

    ref = Reference.read(model, renderer, rows, pairs, cfg, device)              # once per export
    parity = measure(ref, TorchReader(artifact_model, ...), "model-q8_0.gguf", "q8_0", cfg)   # per artifact, per reader

An artifact is read through a `Reader`: greedy answers to prompts given as token ids, and the logits at every position
of a row. `TorchReader` wraps a transformers model (the merged folder; a GGUF de-quantized by transformers);
models/llama_cpp_read.py reads a GGUF with llama.cpp itself.

- greedy answers to the held-out prompts (the first assistant turn's prompt, as training rendered it): the share of
  answers identical to the reference's, and the share of answer tokens identical (up to where they part);
- teacher-forced on the held-out rows, at every answer token: the share of positions where the artifact's most
  likely next token is the reference's, the mean KL(reference || artifact), and the held-out loss of both;
- the run's task metric (task:), recomputed on the artifact, with a paired-bootstrap interval of the difference.

Thresholds per artifact kind decide whether an export passes (`check`). Identical greedy answers are a cascade: the
first token that differs changes the rest of the answer, so their share falls with answer length for any format that
rounds at all (q8_0: 30-62% identical 48-token answers at a mean KL of 7e-4 to 2e-3 with the next token the
reference's at 97-99% of positions, and 97-100% identical one-word answers). A merged model, the same function,
must give identical answers; the rounding formats are held to what does not depend on length: the next token at each
position, and the KL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.config import Config, DatasetSpec
from tunesmith.data.formats import Example
from tunesmith.data.templates import IGNORE, Encoded, Renderer
from tunesmith.eval.runner import generate_sorted
from tunesmith.eval.tasks import HEADLINE, TaskResult, compare, run_task

Pairs = list[tuple[Example, DatasetSpec]]


@dataclass(frozen=True)
class Threshold:
    answers: float  # least share of identical greedy answers
    next_token: float  # least share of answer positions whose most likely next token is the reference's
    kl: float  # largest mean KL per answer token (nats)


# What an artifact must reach to pass. A merged model is the same function in another layout (floating-point sums in
# another order); f16 rounds each weight to 11 significant bits; q8_0 and the 4-bit types lose more, by design.
THRESHOLDS = {
    "merged": Threshold(answers=0.95, next_token=0.999, kl=1e-3),
    "f16": Threshold(answers=0.0, next_token=0.99, kl=5e-3),
    "q8_0": Threshold(answers=0.0, next_token=0.95, kl=0.02),
    "q4_0": Threshold(answers=0.0, next_token=0.0, kl=0.5),
    "q4_k_m": Threshold(answers=0.0, next_token=0.0, kl=0.5),
}


class Reader(Protocol):
    name: str  # who reads the artifact: transformers, llama.cpp

    def answers(self, prompts: list[list[int]], max_new_tokens: int, stop_ids: list[int]) -> list[str]:
        """Greedy answers, decoded without special tokens and stripped, in the prompts' order."""
        ...

    def logits(self, ids: list[int]) -> torch.Tensor:
        """(len(ids), vocab) float logits, teacher-forced."""
        ...


@dataclass
class TorchReader:
    model: nn.Module
    tokenizer: Any
    batch_size: int
    device: torch.device
    name: str = "transformers"

    def answers(self, prompts: list[list[int]], max_new_tokens: int, stop_ids: list[int]) -> list[str]:
        return generate_sorted(
            self.model, self.tokenizer, prompts, max_new_tokens, self.batch_size, self.device, stop_ids
        )

    @torch.no_grad()
    def logits(self, ids: list[int]) -> torch.Tensor:
        self.model.eval()
        return self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0].float().cpu()


@dataclass
class Reference:
    """The run's own model, read once: its greedy answers, and its log-probabilities at every answer token of the
    held-out rows (kept on the CPU, only at answer positions)."""

    renderer: Renderer
    prompts: list[list[int]]
    answers: list[str]
    rows: list[Encoded]
    logprobs: list[torch.Tensor]  # per row: (answer tokens, vocab) log-softmax
    loss: float
    pairs: Pairs
    task: TaskResult | None
    max_new_tokens: int
    batch_size: int

    @classmethod
    def read(
        cls,
        model: nn.Module,
        renderer: Renderer,
        rows: list[Encoded],
        pairs: Pairs,
        cfg: Config,
        device: torch.device,
        max_new_tokens: int = 48,
    ) -> Reference:
        prompts = [renderer.prompt_ids(renderer.first_turn(ex, spec.system)[0]) for ex, spec in pairs]
        reader = TorchReader(model, renderer.tokenizer, cfg.eval.batch_size, device)
        answers = reader.answers(prompts, max_new_tokens, renderer.stop_ids())
        logprobs, loss = _answer_logprobs(reader, rows)
        task = _task(reader, renderer, pairs, cfg) if cfg.task.type != "none" else None
        return cls(renderer, prompts, answers, rows, logprobs, loss, pairs, task, max_new_tokens, cfg.eval.batch_size)


@dataclass
class Parity:
    artifact: str
    kind: str  # merged | f16 | q8_0 | ... (the threshold it is held to)
    reader: str  # who read it back: transformers, llama.cpp
    prompts: int
    answers_identical: float
    tokens_identical: float
    next_token_identical: float  # teacher-forced: positions where the most likely next token is the reference's
    mean_kl: float
    loss_reference: float
    loss_artifact: float
    task: dict = field(default_factory=dict)  # metric -> {reference, artifact, diff: {...interval}}
    differing: list[dict] = field(default_factory=list)  # a few prompts whose answers differ, both answers
    max_logit_diff: float | None = None  # heads: the largest difference of any logit (a reward model's score)
    tokenizer_identical: float | None = None  # a runtime's own tokenizer: share of prompt texts split into equal ids
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    @property
    def loss_delta(self) -> float:
        return self.loss_artifact - self.loss_reference

    def as_dict(self) -> dict:
        return asdict(self) | {"loss_delta": self.loss_delta}


def _task(reader: Reader, renderer: Renderer, pairs: Pairs, cfg: Config) -> TaskResult:
    return run_task(None, renderer, pairs, cfg.task, cfg.eval.batch_size, None, generate=reader.answers)


def _row_logprobs(reader: Reader, row: Encoded) -> tuple[torch.Tensor, float, int]:
    """The log-softmax over the vocabulary at each position of `row` that predicts an answer token, the NLL of those
    tokens and their count."""
    labels = torch.tensor(row.labels[1:])
    keep = labels != IGNORE
    logp = F.log_softmax(reader.logits(row.input_ids)[:-1][keep], dim=-1)
    return logp, -float(logp.gather(1, labels[keep].unsqueeze(1)).sum()), int(keep.sum())


def _answer_logprobs(reader: Reader, rows: list[Encoded]) -> tuple[list[torch.Tensor], float]:
    """Per row, the answer positions' log-probabilities (one row at a time: a 262k vocabulary makes whole batches of
    logits large), and the mean NLL of the answer tokens."""
    out, nll, tokens = [], 0.0, 0
    for row in rows:
        logp, row_nll, n = _row_logprobs(reader, row)
        out.append(logp)
        nll, tokens = nll + row_nll, tokens + n
    return out, nll / max(1, tokens)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def measure(ref: Reference, reader: Reader, artifact: str, kind: str, cfg: Config) -> Parity:
    """Parity of an artifact, read through `reader` (a reader of its own format), against `ref`."""
    renderer = ref.renderer
    answers = reader.answers(ref.prompts, ref.max_new_tokens, renderer.stop_ids())
    same = sum(a == b for a, b in zip(ref.answers, answers, strict=True))
    encode = renderer.tokenizer.encode
    shared = total = 0
    differing = []
    for a, b, prompt in zip(ref.answers, answers, ref.prompts, strict=True):
        ta, tb = encode(a, add_special_tokens=False), encode(b, add_special_tokens=False)
        shared += _common_prefix(ta, tb)
        total += max(len(ta), len(tb), 1)
        if a != b and len(differing) < 5:
            differing.append({"prompt": renderer.tokenizer.decode(prompt)[-300:], "reference": a, "artifact": b})
    kl_sum, kl_tokens, agree, nll, tokens = 0.0, 0, 0, 0.0, 0
    for row, ref_logp in zip(ref.rows, ref.logprobs, strict=True):
        logp, row_nll, n = _row_logprobs(reader, row)
        width = min(ref_logp.shape[-1], logp.shape[-1])  # a runtime may drop padded vocabulary rows
        ref_part = ref_logp[:, :width]
        kl_sum += float((ref_part.exp() * (ref_part - logp[:, :width])).sum())
        kl_tokens += ref_logp.shape[0]
        agree += int((ref_logp.argmax(-1) == logp.argmax(-1)).sum())
        nll, tokens = nll + row_nll, tokens + n
    parity = Parity(
        artifact=artifact,
        kind=kind,
        reader=reader.name,
        prompts=len(ref.prompts),
        answers_identical=same / max(1, len(ref.prompts)),
        tokens_identical=shared / max(1, total),
        next_token_identical=agree / max(1, kl_tokens),
        mean_kl=max(0.0, kl_sum / max(1, kl_tokens)),
        loss_reference=ref.loss,
        loss_artifact=nll / max(1, tokens),
        differing=differing,
    )
    if ref.task is not None:
        result = _task(reader, renderer, ref.pairs, cfg)
        diffs = compare(ref.task, result, cfg.task)
        parity.task = {
            metric: {"reference": ref.task.metrics[metric], "artifact": result.metrics[metric], "diff": diffs[metric]}
            for metric in HEADLINE[cfg.task.type]
        }
    return check(parity)


def check(parity: Parity) -> Parity:
    """Hold the artifact to its kind's threshold; the reasons say what failed."""
    limit = THRESHOLDS[parity.kind]
    parity.reasons = []
    if parity.answers_identical < limit.answers:
        parity.reasons.append(
            f"{parity.answers_identical:.1%} of greedy answers identical (at least {limit.answers:.0%} required)"
        )
    if parity.next_token_identical < limit.next_token:
        parity.reasons.append(
            f"the most likely next token is the reference's at {parity.next_token_identical:.1%} of answer positions "
            f"(at least {limit.next_token:.1%} required)"
        )
    if parity.mean_kl > limit.kl:
        parity.reasons.append(f"mean KL {parity.mean_kl:.2g} per answer token (at most {limit.kl:g} allowed)")
    if parity.tokenizer_identical is not None and parity.tokenizer_identical < 1.0:
        parity.reasons.append(
            f"{parity.reader}'s tokenizer splits {1 - parity.tokenizer_identical:.1%} of the prompt texts differently "
            "from the training tokenizer"
        )
    parity.passed = not parity.reasons
    return parity


@torch.no_grad()
def measure_head(
    reference: nn.Module, model: nn.Module, rows: list[Encoded], labels: list[str], pad_id: int, device: torch.device
) -> Parity:
    """Parity of a classification (or reward) head: the share of held-out rows given the same class, the mean KL of
    the class distributions, and the largest logit difference (a reward model's score)."""
    from tunesmith.eval.predict import head_logits

    inputs = [r.input_ids for r in rows]
    ref = head_logits(reference, inputs, 8, pad_id, device)
    art = head_logits(model, inputs, 8, pad_id, device)
    targets = torch.tensor([r.target if r.target is not None else 0 for r in rows])
    ref_logp, art_logp = F.log_softmax(ref, -1), F.log_softmax(art, -1)
    kl = float((ref_logp.exp() * (ref_logp - art_logp)).sum(-1).mean()) if len(rows) else 0.0

    def loss(logp: torch.Tensor) -> float:  # a 1-output reward head has no class to be right about
        return float(F.nll_loss(logp, targets)) if len(rows) and logp.shape[-1] > 1 else 0.0

    same = float((ref.argmax(-1) == art.argmax(-1)).float().mean()) if len(rows) else 1.0
    parity = Parity(
        artifact="merged",
        kind="merged",
        reader="transformers",
        prompts=len(rows),
        answers_identical=same,
        tokens_identical=same,
        next_token_identical=same,
        mean_kl=max(0.0, kl),
        loss_reference=loss(ref_logp),
        loss_artifact=loss(art_logp),
        max_logit_diff=float((ref - art).abs().max()) if len(rows) else 0.0,
    )
    if labels and len(rows):
        parity.task = {
            "accuracy": {
                "reference": float((ref.argmax(-1) == targets).float().mean()),
                "artifact": float((art.argmax(-1) == targets).float().mean()),
            }
        }
    return check(parity)

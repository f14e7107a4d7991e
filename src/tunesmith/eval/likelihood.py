"""Label-likelihood scoring: which label word the model finds most probable as the answer, without generating.

    scores = label_scores(model, renderer, prompts, ["negative", "positive"], batch_size=8, device=device)
    # scores[i][j]: mean log-probability of label j's tokens as the assistant's answer to prompts[i]

A base model asked to classify often answers with something other than a label word (a sentence, an explanation),
which scores as wrong when read from generated text, although the model may well rank the right label first.
Ranking the labels by likelihood (as lm-evaluation-harness scores multiple choice) measures what the model knows.

Each (prompt, label) pair is the conversation ending with the label as the assistant's turn, tokenized exactly as
training tokenizes it (Renderer.encode: the same chat template, system message and answer segmentation). The score
is the *mean* log-probability of the label's own tokens: a sum would favour labels of fewer tokens ("no" over
"maybe") whatever the text says. The end-of-turn token after the label is left out: it is the same for every label
and scores how the model stops, not which label it picks. All pairs go through the model in length-sorted, padded
batches, one forward each, and only the label positions are projected onto the vocabulary; when the pairs share most
of their tokens (k labels after each prompt, the same shots before every row), through a shared prefix instead, which
reads each shared token once (eval/prefix.py).
"""

from __future__ import annotations

import copy
import sys

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.config import Kind
from tunesmith.data.formats import Example, RowError
from tunesmith.data.templates import IGNORE, Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.prefix import shared_logprobs, worth_sharing
from tunesmith.eval.progress import batch_starts
from tunesmith.training.objectives import backbone_and_head, collate

Messages = list[dict[str, str]]


def label_rows(renderer: Renderer, prompt: Messages, labels: list[str]) -> list[Encoded]:
    """One encoded conversation per label, whose trained positions are the label's own tokens only."""
    # Never truncated here: generation is not either, and the few-shot callers bound their prompts' length.
    whole = copy.copy(renderer)
    whole.max_length = sys.maxsize
    rows = []
    for label in labels:
        example = Example(Kind.chat, "task.labels", 0, messages=[*prompt, {"role": "assistant", "content": label}])
        encoded = whole.encode(example)
        if isinstance(encoded, RowError):
            raise TunesmithError(f"task.labels: {label!r} cannot be scored as an answer: {encoded.reason}")
        trained = [i for i, x in enumerate(encoded.labels) if x != IGNORE]
        # Only the last answer: a few-shot prompt's earlier assistant turns (the shots' answers) are trained tokens
        # of the conversation too, and would add the same tokens to every label's score.
        first = len(trained) - 1  # the last answer is the run of consecutive trained positions that ends the row
        while first > 0 and trained[first - 1] == trained[first] - 1:
            first -= 1
        answer = trained[first:]
        if len(answer) < 2:
            raise TunesmithError(f"task.labels: {label!r} has no tokens of its own to score")
        scored = set(answer[:-1])
        encoded.labels = [x if i in scored else IGNORE for i, x in enumerate(encoded.labels)]
        rows.append(encoded)  # the end-of-turn token (or eos) closing the answer is left out, answer[-1]
    return rows


@torch.no_grad()
def sequence_logprobs(
    model: nn.Module,
    rows: list[Encoded],
    pad_id: int,
    batch_size: int,
    device: torch.device,
    progress: str | None = None,
) -> list[tuple[float, int]]:
    """(sum of log-probabilities, tokens) of each row's trained tokens, in the order of `rows`. `progress`: a bar of
    that name (eval/progress.batch_starts). Rows that share most of their tokens (the labels after one prompt, a
    few-shot prompt's shots) are read through a shared prefix instead (eval/prefix.py)."""
    if worth_sharing(model, [row.input_ids for row in rows]):
        return shared_logprobs(model, rows, device, progress)
    was_training = model.training
    model.eval()
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    parts = backbone_and_head(model)
    for start in batch_starts(len(order), batch_size, progress):
        chunk = order[start : start + batch_size]
        batch = collate([rows[i] for i in chunk], pad_id).to(device)
        targets = batch.labels[:, 1:]
        keep = targets != IGNORE
        if parts is None:  # logits post-processed by the model (soft-capping): the plain forward
            logits = model(**batch.model_inputs()).logits[:, :-1][keep]
        else:
            backbone, head = parts
            logits = head(backbone(**batch.model_inputs()).last_hidden_state[:, :-1][keep])
        logp = F.log_softmax(logits.float(), -1).gather(1, targets[keep][:, None]).squeeze(1)
        which = keep.nonzero()[:, 0]
        sums = torch.zeros(len(chunk), device=logp.device).index_add_(0, which, logp)
        counts = keep.sum(1)
        for j, i in enumerate(chunk):
            out[i] = (float(sums[j]), int(counts[j]))
    model.train(was_training)
    return out


def label_scores(
    model: nn.Module,
    renderer: Renderer,
    prompts: list[Messages],
    labels: list[str],
    batch_size: int,
    device: torch.device,
    progress: str | None = None,
) -> list[list[float]]:
    """Mean label-token log-probability of every label after every prompt: scores[prompt][label]."""
    rows = [row for prompt in prompts for row in label_rows(renderer, prompt, labels)]
    scored = sequence_logprobs(model, rows, renderer.tokenizer.pad_token_id, batch_size, device, progress)
    means = [total / count for total, count in scored]
    k = len(labels)
    return [means[i * k : (i + 1) * k] for i in range(len(prompts))]

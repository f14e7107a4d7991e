"""Few-shot prompts for the base-model baselines: k training rows as earlier user/assistant turns of the chat.

    shots = choose_shots(train_pairs, eval_pairs, renderer, task, k=4, seed=42)
    messages = with_shots(prompt, shots)      # system message, the shots' turns, then the row's own turns

The shots are a pure function of (training rows, held-out rows, k, seed): the same shots in front of every scored
row, so the base is scored the same way for every row. They come only from the training rows, and never one whose
prompt text equals a held-out row's (an exact copy across the split would show the model the answer).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

from tunesmith.config import DatasetSpec, TaskConfig
from tunesmith.data.formats import Example
from tunesmith.data.templates import Renderer

Messages = list[dict[str, str]]
Pair = tuple[Example, DatasetSpec]


def _turns(renderer: Renderer, example: Example, spec: DatasetSpec) -> tuple[Messages, str]:
    """The row's first exchange without its system message: what a shot contributes to another row's chat."""
    prompt, answer = renderer.first_turn(example, spec.system)
    return [m for m in prompt if m["role"] != "system"], answer


def prompt_key(messages: Messages) -> str:
    """A row's user text, case- and space-normalised: rows with the same key ask the same thing."""
    return " ".join(" ".join(m["content"] for m in messages if m["role"] == "user").lower().split())


def choose_shots(
    train: Sequence[Pair], held_out: Sequence[Pair], renderer: Renderer, task: TaskConfig, k: int, seed: int
) -> list[Messages]:
    """k shots (each its user turns and the training answer), chosen by `seed`.

    Candidates are the training rows no longer than the median one (k long abstracts would not fit in front of a
    row), without copies of a held-out prompt. For classification the shots are balanced across task.labels: one
    of each label in turn while a label has rows left. The chosen shots are shuffled with the same seed, so the
    last shot (the one a model copies most) is not always the same label."""
    held = {prompt_key(_turns(renderer, ex, spec)[0]) for ex, spec in held_out}
    rows = [_turns(renderer, ex, spec) for ex, spec in train]
    rows = [(msgs, answer) for msgs, answer in rows if prompt_key(msgs) not in held]
    if not rows or k <= 0:
        return []
    sizes = [sum(len(m["content"]) for m in msgs) + len(answer) for msgs, answer in rows]
    median = statistics.median(sizes)
    candidates = [row for row, size in zip(rows, sizes, strict=True) if size <= median]
    rng = random.Random(seed)
    rng.shuffle(candidates)
    if task.type == "classification" and task.labels:
        by_label = {label: [r for r in candidates if r[1].strip() == label] for label in task.labels}
        chosen: list[tuple[Messages, str]] = []
        while len(chosen) < k and any(by_label.values()):
            for label in task.labels:
                if by_label[label] and len(chosen) < k:
                    chosen.append(by_label[label].pop(0))
        rng.shuffle(chosen)
    else:
        chosen = candidates[:k]
    return [[*msgs, {"role": "assistant", "content": answer.strip()}] for msgs, answer in chosen]


def with_shots(prompt: Messages, shots: Sequence[Messages]) -> Messages:
    """The row's prompt with the shots' turns between its system message (if any) and its own turns."""
    system = [m for m in prompt[:1] if m["role"] == "system"]
    return [*system, *(m for shot in shots for m in shot), *prompt[len(system) :]]


def fit_shots(
    prompt: Messages, shots: Sequence[Messages], renderer: Renderer, room: int, limit: int
) -> tuple[Messages, int]:
    """The prompt with as many shots as fit in `limit` tokens with `room` to spare (the answer), dropping the first
    shots first; a prompt that is too long on its own gets none. Returns (messages, shots used)."""
    for used in range(len(shots), 0, -1):
        messages = with_shots(prompt, shots[len(shots) - used :])
        if len(renderer.prompt_ids(messages)) + room <= limit:
            return messages, used
    return list(prompt), 0

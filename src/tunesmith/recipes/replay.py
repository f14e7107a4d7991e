"""Replay: rows that remind the model of what it knew, mixed into every epoch against forgetting (data.replay).

    data: {replay: {fraction: 0.1, source: self}}    # or parent (model.base is a finished run), or both

- self: the base model's own greedy answers to 120 general prompts written for this project
  (assets/general_prompts.jsonl; none asks what the forgetting probes ask). Training towards them pulls the model
  back to its own behaviour on general requests, with no outside data. They are generated once per base model,
  prompt format and length, and cached under the cache root (replay/), so trials and resumes do not pay again.
- parent: when model.base is a finished run, that run's own training rows, as its config read them.

With `kl` above 0 the base model (the parent, when continuing) also reads every replay row once before training, and
each answer token keeps the base's 20 most likely next tokens with their probabilities (`teach`). Training then adds
kl x KL(base || model) over them to the replay rows' loss (training/chunked_ce.py): the model is held to the base's
whole distribution on general requests, not only to its greedy answer.

The replay rows form one more dataset of the training mixture, weighted so that `fraction` of an epoch's rows are
replay rows; the loop, checkpoints and resume need nothing else (the data fingerprint covers them).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch

from tunesmith.config import Config, Kind
from tunesmith.data.formats import Example
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.runner import generate_answers
from tunesmith.models.registry import cache_root, weights_signature
from tunesmith.rundir import RunDir, write_text
from tunesmith.training.objectives import collate
from tunesmith.training.prepare import Prepared, prepare_data

SELF, PARENT = "replay: self", "replay: parent"
TEACHER_TOP = 20  # next tokens of the base kept per answer token for data.replay.kl


def general_prompts() -> list[str]:
    text = (resources.files("tunesmith") / "assets" / "general_prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]


def self_answers(cfg: Config, base_path: Path, model, renderer: Renderer, device, log) -> list[tuple[str, str]]:
    """(prompt, the base's greedy answer) for every general prompt; read from the cache when made before."""
    prompts = general_prompts()
    key = hashlib.sha256(
        json.dumps(
            [
                str(base_path),
                weights_signature(base_path),
                prompts,
                cfg.data.replay.max_new_tokens,
                renderer.chat,
                getattr(renderer.tokenizer, "chat_template", None),
            ]
        ).encode()
    ).hexdigest()[:24]
    cached = cache_root() / "replay" / f"{key}.jsonl"
    if cached.is_file():
        rows = [json.loads(line) for line in cached.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["prompt"], r["answer"]) for r in rows]
    log(f"replay: the base answers {len(prompts)} general prompts (once; cached in {cached.parent})")
    ids = [renderer.prompt_ids([{"role": "user", "content": p}]) for p in prompts]
    answers: list[str] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(ids), 16):
        answers += generate_answers(
            model,
            renderer.tokenizer,
            ids[start : start + 16],
            cfg.data.replay.max_new_tokens,
            device,
            renderer.stop_ids(),
        )
    model.train(was_training)
    pairs = [(p, a.strip()) for p, a in zip(prompts, answers, strict=True) if a.strip()]
    if not pairs:
        raise TunesmithError(
            f"data.replay.source self: the base model {cfg.model.base} answered none of the {len(prompts)} general "
            "prompts (every answer was empty), so it has nothing of its own to replay; use source: parent or fraction 0"
        )
    write_text(cached, "".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in pairs))
    return pairs


def parent_prepared(cfg: Config, encoder) -> Prepared | None:
    """The rows of the causal-LM run model.base continues from, as its config reads them, encoded for this run (None
    when model.base is no such run: a classifier's rows are no causal-LM rows)."""
    run = RunDir(Path(cfg.model.base).expanduser())
    if not run.is_run or run.method != "sft" or cfg.method.type != "sft":
        return None
    parent = run.config()
    try:
        return prepare_data(parent, encoder)
    except TunesmithError as err:
        raise TunesmithError(
            f"the parent run {run.path}'s data cannot be read for replay or retention: {err}"
        ) from None


def _question(example: Example) -> str:
    """The row's prompt, or its first user turn, as compared across runs (case and outer spaces ignored)."""
    users = [m["content"] for m in example.messages or [] if m["role"] == "user"]
    return (example.prompt or (users[0] if users else "") or example.text or "").strip().lower()


def teach(rows: list[Encoded], model, pad_id: int, device, autocast, batch: int = 8) -> None:
    """Give every row its teacher: at each trained position, the model's TEACHER_TOP most likely next tokens and
    their log-probabilities (Encoded.teacher), read in one forward pass per `batch` rows."""
    was_training = model.training
    model.eval()
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None),
    ):
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            logits = model(**collate(chunk, pad_id).to(device).model_inputs()).logits
            for i, row in enumerate(chunk):
                before = [p - 1 for p in row.target_positions]  # the prediction of token p is read at p - 1
                top = torch.log_softmax(logits[i, before].float(), -1).topk(TEACHER_TOP, -1)
                row.teacher = (top.indices.cpu().tolist(), top.values.cpu().tolist())
    model.train(was_training)


def add_replay(
    cfg: Config,
    prepared: Prepared,
    parent: Prepared | None,
    renderer: Renderer,
    base_path: Path,
    model,
    device,
    log,
    autocast=None,
) -> None:
    """Append the replay rows to prepared.train as datasets of their own, weighted to `fraction` of each epoch.
    `parent`: parent_prepared's rows. With replay.kl the base (`model`, in `autocast`) teaches every replay row."""
    replay = cfg.data.replay
    if not replay.fraction:
        return
    sources: list[tuple[str, list[Encoded]]] = []
    if replay.source in ("self", "both"):
        pairs = self_answers(cfg, base_path, model, renderer, device, log)
        rows = []
        for i, (prompt, answer) in enumerate(pairs):
            example = Example(
                Kind.chat,
                SELF,
                i + 1,
                messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            )
            encoded = renderer.encode(example)
            if isinstance(encoded, Encoded):
                rows.append(encoded)
        sources.append((SELF, rows))
    if replay.source in ("parent", "both"):
        if parent is None:
            raise TunesmithError(
                f"data.replay.source {replay.source}: model.base {cfg.model.base!r} is not a finished run, so there is "
                "no parent training data to replay (use source: self)"
            )
        # A parent row whose question this run's data answers anew (a fact that changed) is not replayed: the new
        # answer supersedes it.
        asked = {_question(example) for example, _ in prepared.train_examples}
        kept = [r for r, (ex, _) in zip(parent.train, parent.train_examples, strict=True) if _question(ex) not in asked]
        if len(kept) < len(parent.train):
            log(f"replay: {len(parent.train) - len(kept)} parent rows left out: this run's data asks them anew")
        sources.append((PARENT, kept))
    replayed = sum(len(rows) for _, rows in sources)
    if replay.kl and replayed:
        log(f"replay: the base reads the {replayed} replay rows once for the KL penalty (kl {replay.kl})")
        teach([row for _, rows in sources for row in rows], model, renderer.tokenizer.pad_token_id, device, autocast)
    sizes = prepared.train_sizes()
    own = [
        float(size) if spec.weight is None else spec.weight for spec, size in zip(cfg.data.train, sizes, strict=False)
    ]
    if replayed:  # an epoch still visits the run's own rows once, plus the replay share on top
        prepared.epoch_rows = round(sum(sizes[: len(cfg.data.train)]) / (1 - replay.fraction))
    total = replay.fraction / (1 - replay.fraction) * sum(own)
    for name, rows in sources:
        if not rows:
            continue
        index = len(prepared.train_names)
        for row in rows:
            row.dataset = index
        prepared.train.extend(rows)
        prepared.train_names.append(name)
        prepared.extra_weights.append(total * len(rows) / replayed)
    log(
        f"replay: {replayed} rows ({', '.join(f'{n}: {len(r)}' for n, r in sources)}), "
        f"{replay.fraction:.0%} of each epoch"
    )


def add_retention(cfg: Config, prepared: Prepared, parent: Prepared | None, log) -> dict | None:
    """Continuing from a finished run: its held-out rows (`parent`: parent_prepared's) join this run's evaluation as
    datasets of their own ("parent: NAME"), so the run reports retention on the old task beside gain on the new one.
    Returns the lineage the manifest records (parent run, its config's sha256), or None when model.base is no run."""
    run = RunDir(Path(cfg.model.base).expanduser())
    if not run.is_run:
        return None
    lineage = {
        "run": str(run.path.resolve()),
        "config_sha256": hashlib.sha256(run.config_file.read_bytes()).hexdigest(),
    }
    if parent is None:
        return lineage
    offset = len(prepared.eval_names)
    for row in parent.eval:
        row.dataset += offset
    prepared.eval.extend(parent.eval)
    prepared.eval_names.extend(f"parent: {name}" for name in parent.eval_names)
    prepared.retention.update(range(offset, offset + len(parent.eval_names)))
    log(f"continuing from {run.path}: its {len(parent.eval)} held-out rows are scored too, for retention")
    return lineage

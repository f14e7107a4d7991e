"""Classify texts with a finished classification-head run (method.type: classifier), and score a head on held-out
rows.

    tunesmith predict runs/sst2-head --text "a gripping, funny film" --text "two hours I want back"
    tunesmith predict runs/sst2-head --file new_reviews.csv --out preds.jsonl

Inputs are encoded as training encoded them (data/classify.py), with the run's prompt format, max_length and first
training dataset's template and system message from its config.yaml, and classified by `final/` loaded with
transformers + peft alone. `--text` (and `--field COLUMN`) give the text itself; a training template with a single
placeholder is filled with it. A `--file` row without `--field` is read as the training rows were: the template
filled from its columns, or the column the training data mapped to text / prompt (else `text`). Generative runs
(method.type: sft) answer through `tunesmith generate` instead.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.config import DatasetSpec
from tunesmith.data.classify import fit_input, head_input_ids
from tunesmith.data.formats import RowError, template_columns
from tunesmith.data.loading import detect_format, read_rows
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.errors import TunesmithError
from tunesmith.eval.metrics import compute
from tunesmith.models.loading import pick_device
from tunesmith.models.trained import NoFinishedModel, load_run, model_kind
from tunesmith.rundir import RunDir
from tunesmith.training.objectives import ClassificationObjective

SHOWN_ERRORS = 20


class NotAHead(TunesmithError):
    """The run has no classification head to predict with."""


# --- logits and held-out scores ----------------------------------------------------------------------------------


@torch.no_grad()
def head_logits(
    model: nn.Module, inputs: list[list[int]], batch_size: int, pad_id: int, device: torch.device
) -> torch.Tensor:
    """(N, K) float logits in input order. Batches of similar length, right-padded with the pad id the model's
    pooling skips (data/classify.py makes sure no input ends with it)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    out: list[torch.Tensor] = [torch.empty(0)] * len(inputs)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(inputs[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, : len(inputs[i])] = torch.tensor(inputs[i])
            mask[row, : len(inputs[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        for row, i in enumerate(chunk):
            out[i] = logits[row].float().cpu()
    model.train(was_training)
    return torch.stack(out) if out else torch.empty(0)


@dataclass
class HeadEval:
    metrics: dict[str, float]
    logits: torch.Tensor  # (N, K), in the rows' order


def evaluate_head(
    model: nn.Module,
    rows: list[Encoded],
    objective: ClassificationObjective,
    labels: list[str],
    batch_size: int,
    pad_id: int,
    device: torch.device,
) -> HeadEval:
    """Loss (the training objective's, per row: class weights, focal and smoothing included), plain cross-entropy
    `ce` (comparable across those settings), accuracy and macro-F1 on held-out rows. `token_accuracy`, `tokens` and
    `perplexity` (exp of the loss) are kept under the causal-LM names so run tables read the same; a head's trained
    unit is the row."""
    logits = head_logits(model, [r.input_ids for r in rows], batch_size, pad_id, device)
    targets = torch.tensor([r.target for r in rows], dtype=torch.long)
    loss = float(objective.loss_parts(logits, targets).loss_sum) / max(1, len(rows))
    scores = compute(
        "classification", [labels[i] for i in logits.argmax(-1).tolist()], [labels[t] for t in targets.tolist()], labels
    )
    metrics = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "token_accuracy": scores["accuracy"],
        "tokens": len(rows),
        "rows": len(rows),
        "ce": float(F.cross_entropy(logits, targets)) if rows else 0.0,
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
    }
    return HeadEval(metrics, logits)


# --- a finished run ----------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    label: str
    probability: float
    probabilities: dict[str, float]


@dataclass
class HeadModel:
    """A finished head run, ready to classify: `final/` plus the run's input settings."""

    model: nn.Module
    tokenizer: Any
    labels: list[str]
    renderer: Renderer
    spec: DatasetSpec | None  # the run's first training dataset: template, field mapping, system message
    device: torch.device

    def encode(self, text: str) -> list[int]:
        ids, _ = fit_input(
            head_input_ids(text, self.renderer, self.spec.system if self.spec else None),
            self.renderer.max_length,
            self.tokenizer.pad_token_id,
        )
        if not ids:
            raise TunesmithError(f"input {text[:40]!r} has no token left to classify")
        return ids

    def predict(self, texts: list[str], batch_size: int = 16) -> list[Prediction]:
        logits = head_logits(
            self.model, [self.encode(t) for t in texts], batch_size, self.tokenizer.pad_token_id, self.device
        )
        out = []
        for probs in logits.softmax(-1).tolist():
            best = max(range(len(probs)), key=probs.__getitem__)
            out.append(Prediction(self.labels[best], probs[best], dict(zip(self.labels, probs, strict=True))))
        return out


def load_head(run: str | Path, device: torch.device | None = None) -> HeadModel:
    """`final/` of a classifier run (adapter on its base, or a full model), in the dtype its files were saved in,
    and the settings its inputs were encoded with."""
    device = device or pick_device()
    run_dir = RunDir.at(run)
    try:
        kind = model_kind(run_dir.model_dir)
    except NoFinishedModel:
        raise NotAHead(
            f"{run}: no finished model here (expected final/ with adapter_config.json or config.json)"
        ) from None
    if kind != "classifier":
        raise NotAHead(
            f"{run}: not a classification-head run (method.type: classifier); answer with `tunesmith generate`"
        )
    trained = load_run(run_dir, device, "auto")
    model = trained.model
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    # A final/ folder on its own has no training datasets: the defaults a run would have used.
    spec = None
    if run_dir.config_file.is_file():
        cfg = run_dir.config()
        spec = cfg.data.train[0] if cfg.data.train else None
    return HeadModel(model, trained.tokenizer, labels, trained.settings.renderer(trained.tokenizer), spec, device)


# --- turning inputs into texts -----------------------------------------------------------------------------------


def fill_template(text: str, spec: DatasetSpec | None) -> str:
    """A bare text as training saw it: the training template, when it has one placeholder, filled with it."""
    if spec is None or spec.template is None:
        return text
    columns = template_columns(spec.template)
    if len(columns) != 1:
        raise TunesmithError(
            f"the run's training template uses {len(columns)} columns ({', '.join(columns)}); "
            "give rows with those columns through --file instead of --text / --field"
        )
    return spec.template.format_map({columns[0]: text})


def _text_column(spec: DatasetSpec | None) -> str:
    if spec is not None:
        for source, canon in spec.fields.items():
            if canon in ("text", "prompt", "instruction"):
                return source
    return "text"


def row_text(row: dict[str, Any], spec: DatasetSpec | None, field: str | None) -> str:
    """The input of one file row; raises ValueError(field, reason) when the row has none."""
    if field is None and spec is not None and spec.template is not None:
        try:
            return spec.template.format_map(row)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
            raise ValueError("template", f"cannot fill the run's training template from this row: {err}") from None
    column = field or _text_column(spec)
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if column not in row else f"{type(value).__name__} {value!r}"[:60]
        raise ValueError(column, f"expected a non-empty text column, got {got}")
    return fill_template(value, spec) if field is not None else value


def read_inputs(path: Path, spec: DatasetSpec | None, field: str | None) -> list[tuple[int, dict, str]]:
    """(line, row, input text) for every row of a data file of any supported format; every bad row is reported."""
    fmt, columns = "auto", None
    if spec is not None and detect_format(path) is None:  # a file named like none: read it as the training data
        fmt, columns = spec.format, spec.columns
    rows, errors = [], []
    for line, item in read_rows(path, fmt, columns):
        if isinstance(item, RowError):
            errors.append(item)
            continue
        try:
            rows.append((line, item, row_text(item, spec, field)))
        except ValueError as err:
            errors.append(RowError(str(path), line, *err.args))
    if errors:
        shown = "\n".join(str(e) for e in errors[:SHOWN_ERRORS])
        more = f"\n... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise TunesmithError(f"{len(errors)} row(s) cannot be classified; nothing was predicted:\n{shown}{more}")
    return rows


def predict_command(
    run: str,
    texts: list[str] | None,
    file: str | None,
    field: str | None = None,
    out: str | None = None,
    batch_size: int = 16,
) -> int:
    """`tunesmith predict`: print label and probability per --text, or write one JSON line per --file row."""
    from tunesmith.data.loading import DataError

    head = load_head(run)
    if file is None:
        inputs = [(i + 1, {"text": t}, fill_template(t, head.spec)) for i, t in enumerate(texts or [])]
    else:
        try:
            inputs = read_inputs(Path(file), head.spec, field)
        except DataError as err:
            raise TunesmithError(str(err)) from None
    predictions = head.predict([text for _, _, text in inputs], batch_size)
    if file is None and out is None:
        for (_, row, _), p in zip(inputs, predictions, strict=True):
            print(f"{p.label}\t{p.probability:.4f}\t{row['text']}")
        return 0
    records = (
        {"line": line, "row": row, "label": p.label, "probability": p.probability, "probabilities": p.probabilities}
        for (line, row, _), p in zip(inputs, predictions, strict=True)
    )
    if out is None:
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return 0
    with open(out, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    counts = ", ".join(f"{label} {n}" for label, n in Counter(p.label for p in predictions).most_common())
    print(f"{out}: {len(predictions)} predictions ({counts or 'none'})")
    return 0

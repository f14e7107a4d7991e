"""`tunesmith export RUN --to merged gguf ollama [--quant f16 q8_0 q4_k_m] [--out DIR]`: leave with a model that runs
elsewhere, proven equal to the one the run trained.

    tunesmith export runs/quickstart --to merged gguf ollama          # into runs/quickstart/export/

- merged: the LoRA folded into the base weights, saved as plain HF safetensors with the tokenizer and its chat
  template (a classification head's run: an HF sequence-classification model);
- gguf: one file per --quant, written with the `gguf` package (models/gguf_write.py), the run's chat template and
  lineage in its metadata;
- ollama: a Modelfile beside the first GGUF, whose TEMPLATE, stop tokens and system message reproduce the prompt the
  run trained on (models/ollama.py checks its rendering token for token against the training render).

Every artifact is read back by a reader that is not its writer (transformers for the merged folder, transformers'
GGUF loader, which de-quantizes, for each GGUF) and measured against the run's own model, the adapter on its base in
fp32, on the run's held-out rows (eval/parity.py). export.json holds the table; an artifact below its threshold makes
the command exit 1. Everything is written into a staging folder renamed into place at the end, so an interrupted
export leaves no half-written folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from tunesmith.config import Kind
from tunesmith.data.formats import Example
from tunesmith.data.templates import Encoded
from tunesmith.errors import TunesmithError
from tunesmith.eval.parity import Parity, Reference, TorchReader, check, measure, measure_head
from tunesmith.methods import build_method
from tunesmith.models.gguf_write import ARCHITECTURES, QUANTS, gguf_architecture, write_gguf
from tunesmith.models.llama_cpp_read import LlamaCppReader
from tunesmith.models.loading import _quiet_transformers, loading
from tunesmith.models.ollama import modelfile, ollama_check, training_chat_template
from tunesmith.models.registry import source_gguf
from tunesmith.models.trained import NoFinishedModel, adapter_base, load_run, model_kind, shared_system
from tunesmith.recipes.evaluate import held_out
from tunesmith.report.html import EXPORT_HEADER, export_rows
from tunesmith.report.run_html import write_run_report
from tunesmith.rundir import RunDir, write_json, write_text

FORMATS = ("merged", "gguf", "ollama")
DEFAULT_QUANTS = ("f16", "q8_0")


def _finished(path: Path) -> RunDir:
    run = RunDir(path)
    if not run.path.is_dir():
        raise TunesmithError(f"{path}: no such run folder")
    if not run.is_run:
        raise TunesmithError(
            f"{path}: not a finished run (no final/ beside config.yaml); finish it with "
            f"`tunesmith train {run.config_file} --resume` first"
            if run.config_file.is_file()
            else f"{path}: not a run folder (no config.yaml and final/)"
        )
    return run


def _target(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TunesmithError(f"{out}: the export folder exists and is not empty; choose another --out or remove it")
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _lineage(run: RunDir) -> dict[str, str]:
    manifest = run.manifest() if run.manifest_file.is_file() else {}
    return {
        "tunesmith.run": str(run.path.resolve()),
        "tunesmith.config_sha256": _sha256(run.config_file),
        "tunesmith.base": str(run.config().model.base),
        "tunesmith.data_sha256": ",".join(str(d.get("sha256", "")) for d in manifest.get("data", [])),
    }


def _plan(run: RunDir, formats: list[str], quants: list[str]) -> tuple[str, Path | None]:
    """Refuse what cannot be exported before anything is loaded or written: (model kind, source GGUF)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise TunesmithError(f"--to {unknown[0]}: unknown format (choose from {', '.join(FORMATS)})")
    bad = [q for q in quants if q not in QUANTS]
    if bad:
        raise TunesmithError(f"--quant {bad[0]}: unknown quantisation (choose from {', '.join(QUANTS)})")
    try:
        kind = model_kind(run.final)
    except NoFinishedModel as err:
        raise TunesmithError(str(err)) from None
    if kind == "classifier" and formats != ["merged"]:
        raise TunesmithError(
            f"{run.path}: a classification head's run exports only --to merged (an HF sequence-classification "
            "model); GGUF runtimes generate text"
        )
    source = None
    if {"gguf", "ollama"} & set(formats):
        weights = adapter_base(run.final) or run.final
        model_type = json.loads((weights / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type not in ARCHITECTURES:
            supported = ", ".join(sorted(set(ARCHITECTURES.values())))
            raise TunesmithError(
                f"{run.path}: its base is a {model_type!r} model; --to gguf writes {supported} (export --to merged "
                "and convert with llama.cpp's convert_hf_to_gguf.py)"
            )
        source = source_gguf(str(run.config().model.base))
    return kind, source


def export_command(
    run_path: str, formats: list[str], quants: list[str] | None, out: Path | None, rows: int, threads: int | None
) -> int:
    run = _finished(Path(run_path))
    formats = list(dict.fromkeys(formats))
    quants = list(dict.fromkeys(quants or DEFAULT_QUANTS))
    kind, source = _plan(run, formats, quants)
    target = _target(out or run.path / "export")
    if threads:
        torch.set_num_threads(threads)
    staging = target.with_name(f".{target.name}.part-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        summary = _export(run, kind, source, formats, quants, staging, rows)
        if target.exists():
            target.rmdir()  # checked empty above
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _record(run, summary, target)
    _print_table(summary, target)
    failed = [p for p in summary["parity"] if not p["passed"]]
    for p in failed:
        print(f"parity failed: {p['artifact']}: {'; '.join(p['reasons'])}")
    return 1 if failed else 0


def _export(
    run: RunDir, kind: str, source: Path | None, formats: list[str], quants: list[str], staging: Path, rows: int
) -> dict:
    device = torch.device("cpu")
    cfg = run.config()
    _quiet_transformers()
    print(f"loading {run.path} as it trained (adapter on its base, fp32): the reference", flush=True)
    reference = load_run(run, device, torch.float32)
    renderer = reference.settings.renderer(reference.tokenizer)
    files: dict[str, dict] = {}
    if kind == "classifier":
        parity = [_export_head(run, reference, renderer, staging, rows, device)]
        files["merged"] = {"path": "merged", "bytes": _size(staging / "merged")}
        return _summary(run, staging, formats, [], 0 if not parity else parity[0].prompts, files, parity, None)
    # Rows chosen as the run's method chose its held-out rows; preference pairs are read as the chosen answer.
    pairs = [(_as_answer(example), spec) for example, spec in held_out(cfg, build_method(cfg).encoder(renderer))]
    pairs = pairs[:rows]
    encoded = [renderer.encode(example, spec.system) for example, spec in pairs]
    keep = [i for i, e in enumerate(encoded) if isinstance(e, Encoded)]
    pairs, encoded = [pairs[i] for i in keep], [encoded[i] for i in keep]
    if not pairs:
        raise TunesmithError(f"{run.path}: none of its held-out rows renders as a prompt, so parity cannot be measured")
    print(f"reading the reference's answers and log-probabilities on {len(pairs)} held-out rows", flush=True)
    ref = Reference.read(reference.model, renderer, encoded, pairs, cfg, device)
    del reference
    merged = load_run(run, device, torch.float32, merged=True).model
    parity: list[Parity] = []
    if "merged" in formats:
        folder = staging / "merged"
        merged.save_pretrained(folder)
        renderer.tokenizer.chat_template = training_chat_template(renderer)
        renderer.tokenizer.save_pretrained(folder)
        files["merged"] = {"path": "merged", "bytes": _size(folder)}
        parity.append(_check_merged(ref, folder, cfg, device))
    ggufs: dict[str, Path] = {}
    if {"gguf", "ollama"} & set(formats):
        gguf_architecture(merged)  # an unsupported architecture is refused before any file is written
        template = training_chat_template(renderer)
        for quant in quants:
            path = staging / f"model-{quant}.gguf"
            print(f"writing {path.name}", flush=True)
            write_gguf(merged, source, path, quant, template, _lineage(run), renderer.tokenizer, renderer.adds_bos)
            ggufs[quant] = path
            files[path.name] = {"path": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)}
            parity.append(_check_gguf(ref, path, quant, cfg, device))
            parity.extend(_check_llama_cpp(ref, path, quant, cfg))
    ollama = None
    if "ollama" in formats:
        text = modelfile(ggufs[quants[0]].name, renderer, shared_system(cfg))
        ollama = ollama_check(text, renderer, shared_system(cfg))
        write_text(staging / "Modelfile", text)
        files["Modelfile"] = {"path": "Modelfile", "bytes": len(text.encode())}
    return _summary(run, staging, formats, quants if ggufs else [], len(pairs), files, parity, ollama)


def _as_answer(example: Example) -> Example:
    """A preference pair as the conversation that ends in its chosen answer (what the tuned model should say)."""
    if example.kind is not Kind.preference or example.prompt is None:
        return example
    context = example.messages or [{"role": "user", "content": example.prompt}]
    messages = [*context, {"role": "assistant", "content": example.chosen or ""}]
    return Example(Kind.chat, example.source, example.line, messages=messages, row=example.row)


def _summary(
    run: RunDir,
    staging: Path,
    formats: list[str],
    quants: list[str],
    rows: int,
    files: dict,
    parity: list[Parity],
    ollama: dict | None,
) -> dict:
    summary = {
        "run": str(run.path.resolve()),
        "formats": formats,
        "quants": quants,
        "rows": rows,
        "files": files,
        "parity": [p.as_dict() for p in parity],
        "ollama_template": ollama,
        "lineage": _lineage(run),
        "passed": all(p.passed for p in parity),
    }
    write_json(staging / "export.json", summary)
    return summary


def _export_head(run: RunDir, reference, renderer, staging: Path, rows: int, device: torch.device) -> Parity:
    """A classification or reward head: the adapter folded into the decoder, saved as an HF sequence-classification
    model (labels in its config), and its logits on held-out rows against the run's own."""
    from transformers import AutoModelForSequenceClassification

    cfg = run.config()
    method = build_method(cfg)
    encoder = method.encoder(renderer)
    pairs = held_out(cfg, encoder)[:rows]
    encoded = [e for e in (encoder.encode(ex, spec.system) for ex, spec in pairs) if isinstance(e, Encoded)]
    model = reference.model
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    folder = staging / "merged"
    merged.save_pretrained(folder)
    renderer.tokenizer.save_pretrained(folder)
    with loading(folder):
        saved = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    original = load_run(run, device, torch.float32).model  # merge_and_unload changed the reference in place
    labels = list(getattr(cfg.method, "labels", None) or [])
    print(f"measuring merged against the reference on {len(encoded)} held-out rows", flush=True)
    return measure_head(original, saved, encoded, labels, renderer.tokenizer.pad_token_id, device)


def _check_merged(ref: Reference, folder: Path, cfg, device: torch.device) -> Parity:
    from transformers import AutoModelForCausalLM

    with loading(folder):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    print("measuring merged against the reference", flush=True)
    return measure(ref, TorchReader(model, ref.renderer.tokenizer, ref.batch_size, device), "merged", "merged", cfg)


def _check_gguf(ref: Reference, path: Path, quant: str, cfg, device: torch.device) -> Parity:
    from transformers import AutoModelForCausalLM

    with loading(path):  # transformers' GGUF reader de-quantizes: not the code that wrote the file
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    print(f"measuring {path.name} (read back by transformers) against the reference", flush=True)
    return measure(ref, TorchReader(model, ref.renderer.tokenizer, ref.batch_size, device), path.name, quant, cfg)


def _check_llama_cpp(ref: Reference, path: Path, quant: str, cfg) -> list[Parity]:
    """The GGUF as llama.cpp runs it (when llama-cpp-python is installed): its logits and greedy answers against the
    reference, and whether its tokenizer, built from the file's metadata, splits the held-out prompts' text into the
    training tokenizer's ids."""
    tokenizer = ref.renderer.tokenizer
    longest = max([len(r.input_ids) for r in ref.rows] + [len(p) + ref.max_new_tokens for p in ref.prompts])
    if ref.task is not None:
        longest = max(longest, max(len(p) for p in ref.prompts) + cfg.task.max_new_tokens)
    reader = LlamaCppReader.open(path, tokenizer, n_ctx=max(256, longest + 8))
    if reader is None:
        return []
    print(f"measuring {path.name} (read back by llama.cpp) against the reference", flush=True)
    try:
        parity = measure(ref, reader, path.name, quant, cfg)
        same = 0
        for prompt in ref.prompts:
            text = tokenizer.decode(prompt, skip_special_tokens=False)
            same += reader.tokenize(text) == tokenizer.encode(text, add_special_tokens=False)
        parity.tokenizer_identical = same / max(1, len(ref.prompts))
    finally:
        reader.close()
    return [check(parity)]


MARK_START, MARK_END = "<!-- tunesmith export -->", "<!-- /tunesmith export -->"


def _record(run: RunDir, summary: dict, target: Path) -> None:
    """The parity table joins the run's own record: eval/export.json, an Export section of MODEL_CARD.md (replacing
    an earlier export's), and report.html."""
    write_json(run.eval_file("export"), summary | {"folder": str(target.resolve())})
    lines = [MARK_START, "## Export", "", f"Exported to `{target}` (`tunesmith export`); parity against the run's own "
             f"model on {summary['rows']} held-out rows:", "", "| " + " | ".join(EXPORT_HEADER) + " |",
             "|" + "---|" * len(EXPORT_HEADER)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in export_rows(summary)]
    section = "\n".join([*lines, MARK_END])
    card = run.model_card.read_text(encoding="utf-8") if run.model_card.is_file() else ""
    if MARK_START in card and MARK_END in card:
        card = card[: card.index(MARK_START)] + section + card[card.index(MARK_END) + len(MARK_END) :]
    else:
        card = card.rstrip() + "\n\n" + section + "\n"
    write_text(run.model_card, card)
    if run.eval_file("base").is_file() and run.eval_file("tuned").is_file():
        write_run_report(run.path)


def _print_table(summary: dict, target: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"export parity on {summary['rows']} held-out rows")
    for column in EXPORT_HEADER:
        table.add_column(column)
    for row in export_rows(summary):
        table.add_row(*row)
    Console().print(table)
    print(f"exported to {target} (export.json holds every number; MODEL_CARD.md and report.html show the table)")

"""The command line: each verb parses its arguments and calls one function.

tunesmith quickstart
tunesmith train CONFIG.yaml [key.sub=value ...] [--resume]
tunesmith plan CONFIG.yaml [key.sub=value ...]
tunesmith verify CONFIG.yaml [key.sub=value ...] [--steps 3]
tunesmith data check FILE [--kind K] [--fields src=dst ...]
tunesmith data audit TRAIN [--eval EVAL] [--config CONFIG] [--out DIR] [--strict] [--slice FIELD]
tunesmith data redact IN OUT
tunesmith data preview CONFIG.yaml [-n 3]
tunesmith generate RUN --prompt "..."
tunesmith eval RUN_OR_MODEL [--config CONFIG] [--data FILE ...]
tunesmith predict RUN --text "..." [--text ...] | --file F [--field COLUMN] [--out preds.jsonl]
tunesmith models
tunesmith serve [--host 127.0.0.1] [--port 8000] [--runs-dir runs/] [--api-key-file F] [--model DIR ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tunesmith.argtypes import NON_NEGATIVE, PORT, POSITIVE, positive_float
from tunesmith.config import SPEED_OPTIONS, Kind

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub: these machines work offline
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _train(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config

    cfg = load_config(args.config, args.overrides)  # before torch is imported: a bad config fails in a second
    from tunesmith.training.recipe import run_training
    from tunesmith.training.summary import print_result

    print_result(run_training(cfg, resume=args.resume, config_path=Path(args.config)))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.rundir import write_json
    from tunesmith.training.plan import make_plan, print_plan

    plan = make_plan(load_config(args.config, args.overrides), calibration_steps=args.steps)
    print_plan(plan)
    if args.json:
        write_json(args.json, plan.to_json())
    return 1 if plan.warnings else 0


def _verify(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.training.verify import print_report, verify

    options = tuple(args.options) if args.options else None
    report = verify(load_config(args.config, args.overrides), steps=args.steps, options=options)
    print_report(report)
    return 0 if report.ok else 1


def _eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tunesmith.eval.command import eval_command
    from tunesmith.training.recipe import RunResult
    from tunesmith.training.summary import print_result

    result = eval_command(args.target, args.config, args.data, args.kind, args.fields, args.out)
    if "tuned" in result:
        tuned = {**result["tuned"], **{k: result.get(k) for k in ("comparison", "comparison_base", "versus_trivial")}}
        print_result(RunResult(Path(args.target), result["base"], tuned, 0))
    else:
        Console().print_json(data=result["model"]["metrics"])
        if "task" in result["model"]:
            Console().print_json(data=result["model"]["task"]["metrics"])
    print(f"wrote {result['written_to']}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from tunesmith.quickstart import run_quickstart

    run_quickstart(args.out, args.overrides)
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from tunesmith.data.check import check_file

    return check_file(args.file, args.kind, args.format, args.fields, args.columns, args.model, args.config)


def _data_redact(args: argparse.Namespace) -> int:
    from tunesmith.data.redact import redact_file

    report = redact_file(Path(args.src), Path(args.dst), args.format, args.columns.split(",") if args.columns else None)
    found = ", ".join(f"{kind} {n}" for kind, n in report.hits_by_kind.items() if n) or "nothing"
    print(f"{args.dst}: {report.rows} rows, {report.rows_changed} changed; replaced: {found}")
    for line in report.examples + report.problems:
        print(f"  {line}")
    return 0


def _data_audit(args: argparse.Namespace) -> int:
    from tunesmith.data.audit_cli import audit_command

    return audit_command(
        args.train, args.eval, args.config, args.out, args.strict, args.slice,
        args.kind, args.fields, args.format, args.columns, args.model,
    )  # fmt: skip


def _data_preview(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.data.preview import preview

    preview(load_config(args.config, args.overrides), args.n)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from tunesmith.eval.chat import chat_with_run

    print(chat_with_run(args.run, args.prompt, args.system, args.max_new_tokens))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tunesmith.eval.predict import predict_command

    return predict_command(args.run, args.text, args.file, args.field, args.out, args.batch_size)


def _models(_: argparse.Namespace) -> int:
    from tunesmith.models.registry import registered_models

    for entry in registered_models():
        print(f"{entry.name}\t{entry.description}\t(install: {entry.install})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tunesmith.serve.command import build_settings, serve

    serve(
        build_settings(
            args.runs_dir, args.host, args.port, args.api_key_file, args.model, args.trust_remote_code,
            args.workers, args.max_upload_mb, args.max_rows, args.max_batch, args.max_tokens,
        )
    )  # fmt: skip
    return 0


KINDS = tuple(kind.value for kind in Kind)
FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "parquet", "txt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunesmith", description="Fine-tune a language model and prove it improved.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("train", help="run a fine-tuning job from a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help="key.sub=value settings that win over the file")
    p.add_argument("--resume", action="store_true", help="continue this run from its last complete checkpoint")
    p.set_defaults(func=_train)

    p = verbs.add_parser("plan", help="estimate steps, tokens, peak memory and epoch time before launching")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=POSITIVE, default=3, help="real training steps to time (after one warm-up)")
    p.add_argument("--json", type=Path, default=None, help="also write the plan as JSON to this file")
    p.set_defaults(func=_plan)

    p = verbs.add_parser("verify", help="check that each speed option leaves losses and gradients unchanged")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=POSITIVE, default=3, help="optimizer steps per variant")
    p.add_argument(
        "--options",
        nargs="+",
        default=None,
        choices=(*SPEED_OPTIONS, "mixed_precision"),
        help="speed options to check (default: all the config could use; mixed_precision where auto picks it)",
    )
    p.set_defaults(func=_verify)

    p = verbs.add_parser("eval", help="score a finished run against its base, or any model, on held-out data")
    p.add_argument("target", help="run directory, registry name, HF model directory or .gguf file")
    p.add_argument("--config", default=None, help="YAML config whose data.eval, task and eval sections are used")
    p.add_argument("--data", nargs="*", default=[], help="held-out files (replace the config's data.eval)")
    p.add_argument("--kind", default="auto", choices=KINDS, help="record kind (default: detect)")
    p.add_argument("--fields", nargs="*", default=[], metavar="SRC=DST", help="map --data columns to fields")
    p.add_argument("--out", default=None, help="JSON file for the scores (default: RUN/eval/eval.json)")
    p.set_defaults(func=_eval)

    p = verbs.add_parser("quickstart", help="tune the embedded default model on the bundled support dataset")
    p.add_argument("--out", default="runs/quickstart", help="run directory (replaced if it exists)")
    p.add_argument("overrides", nargs="*", help="key.sub=value settings, e.g. train.max_steps=10")
    p.set_defaults(func=_quickstart)

    data = verbs.add_parser("data", help="check and preview datasets").add_subparsers(dest="data_verb", required=True)
    p = data.add_parser("check", help="validate a data file; prints every bad row as FILE:LINE: field: reason")
    p.add_argument("file")
    p.add_argument("--kind", default="auto", choices=KINDS, help="record kind (default: detect)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: from the name)")
    p.add_argument("--fields", nargs="*", default=[], metavar="SRC=DST", help="map source columns to fields")
    p.add_argument("--columns", default=None, help="comma-separated column names for a headerless CSV/TSV")
    p.add_argument("--model", default=None, help="tokenizer's model (default: config model.base, else the default)")
    p.add_argument("--config", default=None, help="YAML config: the file's dataset entry, model, max_length, objective")
    p.set_defaults(func=_data_check)

    p = data.add_parser("audit", help="audit data before training: shape, duplicates, leakage, labels, pairs, PII")
    p.add_argument("train", nargs="*", help="training data files (default: the config's data.train)")
    p.add_argument("--eval", nargs="*", default=[], metavar="EVAL", help="held-out files, checked for leakage")
    p.add_argument("--config", default=None, help="YAML config: datasets, model, max_length, audit settings")
    p.add_argument("--out", default="audit", help="folder for audit.json and audit.html")
    p.add_argument("--strict", action="store_true", help="exit 1 on leakage, personal data or rows that train nothing")
    p.add_argument("--slice", default=None, metavar="FIELD", help="source column to split the label distribution by")
    p.add_argument("--kind", default="auto", choices=KINDS, help="record kind (default: detect)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: from the name)")
    p.add_argument("--fields", nargs="*", default=[], metavar="SRC=DST", help="map source columns to fields")
    p.add_argument("--columns", default=None, help="comma-separated column names for a headerless CSV/TSV")
    p.add_argument("--model", default=None, help="tokenizer's model (default: config model.base, else the default)")
    p.set_defaults(func=_data_audit)

    p = data.add_parser("redact", help="copy a data file with personal data and secrets replaced by <EMAIL>, ...")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--columns", default=None, help="comma-separated column names for a headerless CSV/TSV")
    p.set_defaults(func=_data_redact)

    p = data.add_parser("preview", help="show rendered training rows with the trained tokens highlighted")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("-n", type=POSITIVE, default=3, help="rows to show")
    p.set_defaults(func=_data_preview)

    p = verbs.add_parser("generate", help="chat with a finished run")
    p.add_argument("run", help="run directory (or its final/ folder)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=256)
    p.set_defaults(func=_generate)

    p = verbs.add_parser(
        "predict",
        help="label texts with a classification-head run (task.objective: head; generative runs: use generate)",
        description="Classify texts with a finished run trained with task.objective: head, encoding them as its "
        "training rows were (prompt format, template, max_length). Runs that generate the label word "
        "(objective: generate) are not supported here: ask them with `tunesmith generate`.",
    )
    p.add_argument("run", help="run directory (or its final/ folder)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to classify (repeat for several); prints label + p")
    source.add_argument("--file", default=None, help="a data file (jsonl/json/csv/tsv/parquet/txt, .gz too)")
    p.add_argument("--field", default=None, help="--file column holding the text (default: as the run's training data)")
    p.add_argument("--out", default=None, help="write JSONL (row, label, probabilities) here instead of stdout")
    p.add_argument("--batch-size", type=POSITIVE, default=16, help="inputs per forward pass")
    p.set_defaults(func=_predict)

    p = verbs.add_parser("models", help="list the registered base models")
    p.set_defaults(func=_models)

    p = verbs.add_parser("serve", help="OpenAI-compatible server: chat with tuned runs, run fine-tuning jobs")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless an API key file is given)")
    p.add_argument("--port", type=PORT, default=8000)
    p.add_argument("--runs-dir", default="runs", help="runs to serve; jobs write new runs and the server's state here")
    p.add_argument("--api-key-file", default=None, help="keys (one per line) required as Authorization: Bearer")
    p.add_argument("--model", action="append", default=[], help="also serve this HF model directory as a base")
    p.add_argument("--trust-remote-code", action="store_true", help="let checkpoints run the model code they ship")
    p.add_argument("--workers", type=NON_NEGATIVE, default=1, help="job worker processes, one job each (0: none)")
    p.add_argument("--max-upload-mb", type=positive_float, default=64, help="largest file accepted at POST /v1/files")
    p.add_argument("--max-rows", type=POSITIVE, default=100_000, help="most rows accepted in one uploaded file")
    p.add_argument("--max-batch", type=POSITIVE, default=8, help="most answers decoded together")
    p.add_argument("--max-tokens", type=POSITIVE, default=256, help="answer length when a request gives no max_tokens")
    p.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tunesmith.errors import USER_ERRORS, report_unexpected

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tunesmith models | head`: the reader left; say nothing, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as err:  # the last resort: one line, and the traceback in a crash log
        return report_unexpected(err, argv)


if __name__ == "__main__":
    sys.exit(main())

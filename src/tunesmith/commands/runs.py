"""tunesmith generate | predict | export | config show | models: ask or export a finished run, read the schema, list
base models."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunesmith.argtypes import POSITIVE


def _generate(args: argparse.Namespace) -> int:
    from tunesmith.eval.chat import chat_with_run

    print(chat_with_run(args.run, args.prompt, args.system, args.max_new_tokens))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tunesmith.eval.predict import predict_command

    return predict_command(args.run, args.text, args.file, args.field, args.out, args.batch_size)


def _export(args: argparse.Namespace) -> int:
    from tunesmith.recipes.export import export_command

    return export_command(args.run, args.to, args.quant, args.out, args.rows, args.threads)


def _config_show(args: argparse.Namespace) -> int:
    from tunesmith.config_show import show_config

    print(show_config(args.key))
    return 0


def _models(_: argparse.Namespace) -> int:
    from tunesmith.models.registry import ModelNotFound, registered_models, registry_source

    for entry in registered_models():
        try:
            registry_source(entry)
            state = "installed"
        except ModelNotFound:
            state = f"not installed: {entry.install}"
        print(f"{entry.name}\t{entry.description}\t{entry.license}\t({state})")
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("generate", help="chat with a finished run")
    p.add_argument("run", help="run directory (or its final/ folder)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=256)
    p.set_defaults(func=_generate)

    p = verbs.add_parser(
        "predict",
        help="label texts with a classifier run (method.type: classifier; generative runs: use generate)",
        description="Classify texts with a finished run trained with method.type: classifier, encoding them as its "
        "training rows were (prompt format, template, max_length). Runs that generate the label word "
        "(method.type: sft) are not supported here: ask them with `tunesmith generate`.",
    )
    p.add_argument("run", help="run directory (or its final/ folder)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to classify (repeat for several); prints label + p")
    source.add_argument("--file", default=None, help="a data file (jsonl/json/csv/tsv/parquet/txt, .gz too)")
    p.add_argument("--field", default=None, help="--file column holding the text (default: as the run's training data)")
    p.add_argument("--out", default=None, help="write JSONL (row, label, probabilities) here instead of stdout")
    p.add_argument("--batch-size", type=POSITIVE, default=16, help="inputs per forward pass")
    p.set_defaults(func=_predict)

    p = verbs.add_parser(
        "export",
        help="write a finished run as merged HF weights, GGUF or an Ollama model, with a parity report",
        description="Export a finished run: merged (the adapter folded into the base, plain HF safetensors), gguf "
        "(f16 and quantised files for llama.cpp, LM Studio, Ollama) and ollama (a Modelfile that prompts as the run "
        "trained). Each artifact is read back and compared with the run's own model on its held-out rows (greedy "
        "answers, KL per token, loss, task metric); exit 1 when one falls below its threshold.",
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--to", nargs="+", default=["merged"], metavar="FORMAT", help="merged gguf ollama (default merged)")
    p.add_argument("--quant", nargs="+", default=None, metavar="Q", help="GGUF types: f16 q8_0 q4_0 q4_k_m "
                   "(default f16 q8_0; q4_k_m needs llama-cpp-python); ollama uses the first")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="export folder, new or empty (default RUN/export)")
    p.add_argument("--rows", type=POSITIVE, default=32, help="held-out rows the parity report reads (default 32)")
    p.add_argument("--threads", type=POSITIVE, default=None, help="CPU threads (default: torch's)")
    p.set_defaults(func=_export)

    config = verbs.add_parser("config", help="read the config schema: sections, keys, defaults and help")
    p = config.add_subparsers(dest="config_verb", required=True).add_parser("show", help="the schema, or one KEY")
    p.add_argument("key", nargs="?", default=None, help="a section (train), key (train.lr) or method (method.loss)")
    p.set_defaults(func=_config_show)

    p = verbs.add_parser("models", help="list the registered base models")
    p.set_defaults(func=_models)

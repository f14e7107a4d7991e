"""The command line: each verb parses its arguments and calls one function (the verbs live in commands/).

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
tunesmith config show [KEY]
tunesmith models
tunesmith serve [--host 127.0.0.1] [--port 8000] [--runs-dir runs/] [--api-key-file F] [--model DIR ...]
"""

from __future__ import annotations

import argparse
import os
import sys

from tunesmith.commands import data, runs, serve, train

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub: these machines work offline
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunesmith", description="Fine-tune a language model and prove it improved.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for group in (train, data, runs, serve):  # this order is the order `tunesmith --help` lists the verbs in
        group.register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tunesmith.errors import USER_ERRORS, report_unexpected

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank meets the same error: rank 0 says it
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

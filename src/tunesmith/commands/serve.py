"""tunesmith serve: the OpenAI-compatible server for tuned runs and fine-tuning jobs."""

from __future__ import annotations

import argparse

from tunesmith.argtypes import NON_NEGATIVE, PORT, POSITIVE, positive_float


def _serve(args: argparse.Namespace) -> int:
    from tunesmith.serve.command import build_settings, serve

    serve(
        build_settings(
            args.runs_dir, args.host, args.port, args.api_key_file, args.model, args.trust_remote_code,
            args.workers, args.max_upload_mb, args.max_rows, args.max_batch, args.max_tokens, args.train_ranks,
            args.dtype,
        )
    )  # fmt: skip
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("serve", help="OpenAI-compatible server: chat with tuned runs, run fine-tuning jobs")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless an API key file is given)")
    p.add_argument("--port", type=PORT, default=8000)
    p.add_argument("--runs-dir", default="runs", help="runs to serve; jobs write new runs and the server's state here")
    p.add_argument("--api-key-file", default=None, help="keys (one per line) required as Authorization: Bearer")
    p.add_argument("--model", action="append", default=[], help="also serve this HF model directory as a base")
    p.add_argument("--trust-remote-code", action="store_true", help="let checkpoints run the model code they ship")
    p.add_argument("--workers", type=NON_NEGATIVE, default=1, help="job worker processes, one job each (0: none)")
    p.add_argument(
        "--train-ranks", type=POSITIVE, default=1,
        help="train each job data-parallel on this many local processes (torchrun; one GPU each when there are GPUs)",
    )  # fmt: skip
    p.add_argument("--max-upload-mb", type=positive_float, default=64, help="largest file accepted at POST /v1/files")
    p.add_argument("--max-rows", type=POSITIVE, default=100_000, help="most rows accepted in one uploaded file")
    p.add_argument("--max-batch", type=POSITIVE, default=8, help="most answers decoded together")
    p.add_argument("--max-tokens", type=POSITIVE, default=256, help="answer length when a request gives no max_tokens")
    p.add_argument(
        "--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
        help="weights' dtype for answers. auto: bfloat16 on GPUs that have it, float32 on CPUs (the answers the run's "
        "evaluation scored). bfloat16 on a CPU with native bf16 decodes batches ~1.5x faster (benchmarks/README.md, "
        "Serving); its greedy answers then differ from the evaluated float32 ones, and with the batch",
    )  # fmt: skip
    p.set_defaults(func=_serve)

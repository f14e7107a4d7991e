"""Class 2 (part): command-line arguments out of range or pointing at the wrong thing: a usage error or one clear
line, exit 2, never a traceback, a hang or a server that starts anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from common import Fixtures, Verdict, cli, judge, tiny_config, write_yaml


def _args(
    *argv: str, mentions: tuple[str, ...] = (), codes: tuple[int, ...] = (2,)
) -> Callable[[Fixtures, Path], Verdict]:
    """`tunesmith ARGV`, where {model}, {lora}, {head}, {chat}, {config} and {work} name the fixtures."""

    def run(fx: Fixtures, work: Path) -> Verdict:
        config = write_yaml(work / "c.yaml", tiny_config(fx, fx.chat, work / "run"))
        names = {
            "model": fx.model,
            "lora": fx.lora_run,
            "head": fx.head_run,
            "chat": fx.chat,
            "config": config,
            "work": work,
        }
        proc = cli(*[a.format(**names) for a in argv], cwd=work)
        return judge(proc, codes, mentions)

    return run


def _serve(*argv: str, mentions: tuple[str, ...] = ()) -> Callable[[Fixtures, Path], Verdict]:
    """A server setting that cannot work: refused before it starts listening (a hang is a FAIL)."""
    return _args("serve", "--workers", "0", "--runs-dir", "{work}/runs", *argv, mentions=mentions)


ARG_CASES: dict[str, Callable[[Fixtures, Path], Verdict]] = {
    "no verb": _args(),
    "unknown verb": _args("trian", "{config}"),
    "generate --max-new-tokens 0": _args("generate", "{lora}", "--prompt", "hi", "--max-new-tokens", "0"),
    "generate --max-new-tokens -5": _args("generate", "{lora}", "--prompt", "hi", "--max-new-tokens", "-5"),
    "generate on a folder that is not a run": _args("generate", "{work}", "--prompt", "hi"),
    "generate on a missing run": _args("generate", "{work}/nope", "--prompt", "hi", mentions=("nope",)),
    "predict --batch-size 0": _args("predict", "{head}", "--text", "hi", "--batch-size", "0"),
    "predict --batch-size -1": _args("predict", "{head}", "--text", "hi", "--batch-size", "-1"),
    "predict on a generative run": _args("predict", "{lora}", "--text", "hi"),
    "predict on a missing run": _args("predict", "{work}/nope", "--text", "hi", mentions=("nope",)),
    "predict --file missing --field": _args(
        "predict", "{head}", "--file", "{chat}", "--field", "nosuch", mentions=("nosuch",)
    ),
    "eval on a missing target": _args("eval", "{work}/nope", "--data", "{chat}", mentions=("nope",)),
    "eval --kind nonsense": _args("eval", "{model}", "--data", "{chat}", "--kind", "nonsense", mentions=("nonsense",)),
    "data check --kind nonsense": _args("data", "check", "{chat}", "--kind", "nonsense", mentions=("nonsense",)),
    "data check --format nonsense": _args("data", "check", "{chat}", "--format", "nonsense", mentions=("nonsense",)),
    "data check --fields without =": _args("data", "check", "{chat}", "--fields", "question", mentions=("question",)),
    "data audit --fields without =": _args(
        "data", "audit", "{chat}", "--model", "{model}", "--fields", "q", "--out", "{work}/a"
    ),
    "data preview -n -3": _args("data", "preview", "{config}", "-n", "-3"),
    "data preview -n 0": _args("data", "preview", "{config}", "-n", "0", codes=(0, 2)),
    "plan --steps 0": _args("plan", "{config}", "--steps", "0", codes=(0, 1, 2)),
    "plan --steps -1": _args("plan", "{config}", "--steps", "-1"),
    "verify --steps 0": _args("verify", "{config}", "--steps", "0"),
    "train --resume with no run": _args("train", "{config}", "--resume", mentions=("run",)),
    "serve --port 99999": _serve("--port", "99999", mentions=("99999",)),
    "serve --port -1": _serve("--port", "-1"),
    "serve --port abc": _serve("--port", "abc"),
    "serve --max-batch 0": _serve("--max-batch", "0"),
    "serve --max-tokens 0": _serve("--max-tokens", "0"),
    "serve --max-upload-mb -1": _serve("--max-upload-mb", "-1"),
    "serve --max-rows 0": _serve("--max-rows", "0"),
    "serve --workers -1": _args("serve", "--workers", "-1", "--runs-dir", "{work}/runs"),
    "serve --model missing folder": _serve("--model", "{work}/nope", mentions=("nope",)),
    "serve --model a data file": _serve("--model", "{chat}", mentions=("chat.jsonl",)),
    "serve --api-key-file missing": _serve("--api-key-file", "{work}/keys", mentions=("keys",)),
    "serve --runs-dir is a file": _args("serve", "--workers", "0", "--runs-dir", "{chat}", mentions=("chat.jsonl",)),
}

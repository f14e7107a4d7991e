"""The command line's shape: cli.py is a thin entry point, each verb is registered by its group in commands/, the
verbs keep their order, and nothing heavy is imported before a verb runs (the CLI must start in a second).

pytest tests/unit/test_commands.py -q
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from tunesmith import cli
from tunesmith.cli import build_parser

PACKAGE = Path(cli.__file__).parent
ENTRY_POINTS = [PACKAGE / "cli.py", *sorted((PACKAGE / "commands").glob("*.py"))]
# Loading any of these costs seconds (torch alone tens of seconds on a small machine): only a verb's handler may.
HEAVY = ("torch", "transformers", "peft", "datasets", "fastapi", "uvicorn", "rich", "tunesmith.recipes")
HEAVY += ("tunesmith.training", "tunesmith.methods", "tunesmith.models", "tunesmith.eval", "tunesmith.serve")
VERBS = [
    "train",
    "plan",
    "verify",
    "eval",
    "select",
    "sweep",
    "quickstart",
    "data",
    "generate",
    "predict",
    "export",
    "config",
    "models",
    "serve",
]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_entry_point_is_thin():
    """cli.py holds the top parser and main()'s error handling; every verb's arguments and handler live in commands/."""
    source = (PACKAGE / "cli.py").read_text(encoding="utf-8")
    assert len(source.splitlines()) < 150
    functions = {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}
    assert functions == {"build_parser", "main"}


def test_each_verb_is_registered_by_a_command_module_in_the_same_order():
    verbs = subcommands(build_parser())
    assert list(verbs) == VERBS  # `tunesmith --help` lists them in this order
    leaves = [(name, sub) for name, sub in verbs.items() if sub.get_default("func") is not None]
    for group in ("data", "config"):
        leaves += [(f"{group} {name}", sub) for name, sub in subcommands(verbs[group]).items()]
    assert len(leaves) == 17
    for name, sub in leaves:
        assert sub.get_default("func").__module__.startswith("tunesmith.commands."), name


@pytest.mark.parametrize("path", ENTRY_POINTS, ids=lambda p: p.name)
def test_the_command_line_imports_nothing_heavy_at_module_level(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:  # module level only: the handlers import what they need when they run
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        heavy = [n for n in names if any(n == h or n.startswith(f"{h}.") for h in HEAVY)]
        assert not heavy, f"{path.name}:{node.lineno} imports {heavy} before any verb runs"

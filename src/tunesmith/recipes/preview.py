"""`tunesmith data preview CONFIG -n 3`: the first training rows exactly as the model will see them.

Trained tokens (the loss falls on them) are highlighted; everything else is dimmed. For a classification head
(method.type: classifier) each row shows the text the head reads and the class it is trained towards. Without colour
(a pipe or a log file), trained spans are wrapped in [[ ]].
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from tunesmith.config import Config
from tunesmith.data.loading import load_dataset
from tunesmith.data.templates import IGNORE, Encoded, Renderer
from tunesmith.methods import build_method
from tunesmith.models.loading import load_tokenizer
from tunesmith.models.registry import resolve_base
from tunesmith.rundir import RunDir


def highlight(encoded: Encoded, tokenizer, color: bool) -> Text:
    text = Text()
    runs: list[tuple[bool, list[int]]] = []
    for tok, label in zip(encoded.input_ids, encoded.labels, strict=True):
        trained = label != IGNORE
        if runs and runs[-1][0] == trained:
            runs[-1][1].append(tok)
        else:
            runs.append((trained, [tok]))
    for trained, ids in runs:
        piece = tokenizer.decode(ids)
        if color:
            text.append(piece, style="bold green" if trained else "dim")
        else:
            text.append(f"[[{piece}]]" if trained else piece)
    return text


def preview(cfg: Config, n: int = 3, console: Console | None = None) -> None:
    console = console or Console()
    resolved = resolve_base(cfg.model.base)
    run = RunDir(resolved.path)
    folder = run.final if run.is_run else resolved.path
    tokenizer = load_tokenizer(folder)
    renderer = Renderer(tokenizer, cfg.data.prompt_format, cfg.data.max_length)
    encoder = build_method(cfg).encoder(renderer)
    shown = 0
    for spec in cfg.data.train:
        result = load_dataset(spec.model_copy(update={"limit": n - shown}))
        for error in result.errors:
            console.print(f"[red]bad row[/red] {error}", markup=True, highlight=False)
        for example in result.examples:
            encoded = encoder.encode(example, spec.system)
            console.rule(f"{example.source}:{example.line} ({example.kind.value})")
            if not isinstance(encoded, Encoded):
                console.print(f"[red]not trainable[/red] {encoded}", highlight=False)
                continue
            if encoded.target is not None:  # a classification head: the whole text in, one class out
                console.print(tokenizer.decode(encoded.input_ids), highlight=False, markup=False)
                label = cfg.task.labels[encoded.target]
                console.print(f"-> class {encoded.target} ({label}), read by the head at the last token", style="green")
            else:
                console.print(highlight(encoded, tokenizer, console.is_terminal), highlight=False)
            console.print(
                f"{len(encoded.input_ids)} tokens, {encoded.trained_tokens} trained"
                + (" (truncated)" if encoded.truncated else ""),
                style="cyan",
            )
            shown += 1
        if shown >= n:
            break

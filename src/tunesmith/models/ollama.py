"""An Ollama Modelfile that prompts an exported GGUF exactly as the run trained it, and the check that it does.

    text = modelfile("model-q8_0.gguf", renderer, system)   # FROM, TEMPLATE, stop PARAMETERs, SYSTEM
    ollama_check(text, renderer, system)                     # its renderings == the training render, token for token

Ollama renders prompts with a Go text/template over `.Messages` (the Modelfile's SYSTEM first when a conversation
has no system message). The TEMPLATE is chosen by the prompt format the run trained with, recognised from what its
renderer writes: ChatML (`<|im_start|>role ... <|im_end|>`, SmolLM2, Qwen), Llama 3's header format, or
tunesmith's plain format (turns joined by newlines, for base models without a chat template). `render_go` reads the
small part of Go's template language these TEMPLATEs use, so the check runs here without Ollama installed.
"""

from __future__ import annotations

import re

from tunesmith.data.templates import Renderer
from tunesmith.errors import TunesmithError

CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
LLAMA3 = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
PLAIN = "{{- range $i, $m := .Messages }}{{ if $i }}\n{{ end }}{{ .Content }}{{ end }}\n"
# tunesmith's plain format as a Jinja chat template, for GGUF metadata and runtimes that read it.
PLAIN_JINJA = (
    "{% for message in messages %}{% if not loop.first %}{{ '\\n' }}{% endif %}{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n' }}{% endif %}"
)
SAMPLES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a prime number."}],
    [
        {"role": "user", "content": "Hello, who are you?"},
        {"role": "assistant", "content": "An assistant."},
        {"role": "user", "content": "Tell me a fact about the sea."},
    ],
]


class TemplateNotSupported(TunesmithError):
    """A chat template with no Ollama TEMPLATE here; the message names what was recognised."""


def training_chat_template(renderer: Renderer) -> str:
    """The Jinja chat template that renders prompts as the run trained them: the tokenizer's own, or the plain
    format's."""
    return renderer.tokenizer.chat_template if renderer.chat else PLAIN_JINJA


# What each family's chat template makes of a system and a user turn (after the BOS text, which the runtime adds
# itself), and the Go TEMPLATE that renders the same.
FAMILIES = {
    "chatml": ("<|im_start|>system\nA<|im_end|>\n<|im_start|>user\nB<|im_end|>\n<|im_start|>assistant\n", CHATML),
    "llama3": (
        "<|start_header_id|>system<|end_header_id|>\n\nA<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nB"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        LLAMA3,
    ),
}


def _family(renderer: Renderer) -> str:
    if not renderer.chat:
        return "plain"
    probe = [{"role": "system", "content": "A"}, {"role": "user", "content": "B"}]
    text = renderer.tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    bos = renderer.tokenizer.bos_token or ""
    for name, (rendered, _) in FAMILIES.items():
        if text in (rendered, bos + rendered):
            return name
    raise TemplateNotSupported(
        "--to ollama: the run's chat template is none of ChatML, Llama 3 and the plain format, so no Modelfile "
        f"TEMPLATE reproduces it here (it renders a system and a user turn as {text[:120]!r}); export --to gguf "
        "and write the TEMPLATE by hand"
    )


def default_system(renderer: Renderer, system: str | None) -> str | None:
    """The system message a conversation without one gets: the run's shared one, or the one the chat template
    inserts by itself (SmolLM2's names the assistant)."""
    if system or not renderer.chat:
        return system
    text = renderer.tokenizer.apply_chat_template(
        [{"role": "user", "content": "B"}], tokenize=False, add_generation_prompt=True
    )
    match = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n", text, re.S)
    return match.group(1) if match else None


def _quote(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile(gguf_name: str, renderer: Renderer, system: str | None) -> str:
    family = _family(renderer)
    template = FAMILIES[family][1] if family in FAMILIES else PLAIN
    tokenizer = renderer.tokenizer
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quote(template)}"]
    for stop in sorted({tokenizer.decode([i]) for i in renderer.stop_ids() if i is not None}):
        lines.append(f'PARAMETER stop "{stop}"')
    lines.append("PARAMETER temperature 0")
    default = default_system(renderer, system)
    if default:
        lines.append(f"SYSTEM {_quote(default)}")
    return "\n".join(lines) + "\n"


def _field(text: str, key: str) -> str | None:
    match = re.search(rf'^{key} """(.*?)"""$', text, re.S | re.M)
    return match.group(1) if match else None


# --- a reader for the part of Go's text/template the TEMPLATEs above use -------------------------------------------

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def _parse(template: str) -> list:
    """Text and actions as a tree: ("text", s), ("field", name), ("var", name), ("range", var, body),
    ("if", test, body, else_body). Trim markers ({{- and -}}) strip the neighbouring whitespace, as Go does."""
    parts: list = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        parts.append(("action", match.group(2), bool(match.group(3))))
        pos = match.end()
    parts.append(("text", template[pos:]))
    for i, part in enumerate(parts):  # a right trim marker strips the following text's leading whitespace
        if part[0] == "action" and part[2] and i + 1 < len(parts):
            parts[i + 1] = ("text", parts[i + 1][1].lstrip())
    tree, rest = _block(parts, 0)
    if rest != len(parts):
        raise ValueError("unbalanced {{ end }} in template")
    return tree


def _block(parts: list, i: int) -> tuple[list, int]:
    out: list = []
    while i < len(parts):
        part = parts[i]
        if part[0] == "text":
            out.append(part)
            i += 1
            continue
        action = part[1]
        if action in ("end", "else"):
            return out, i
        if action.startswith("range "):
            body, i = _block(parts, i + 1)
            out.append(("range", action[6:].strip(), body))
            i += 1
        elif action.startswith("if "):
            body, i = _block(parts, i + 1)
            other: list = []
            if parts[i][1] == "else":
                other, i = _block(parts, i + 1)
            out.append(("if", action[3:].strip(), body, other))
            i += 1
        else:
            out.append(("value", action))
            i += 1
    return out, i


def _value(expr: str, scope: dict):
    if expr.startswith("."):
        return scope["."].get(expr[1:].capitalize()) if isinstance(scope["."], dict) else None
    if expr.startswith("$"):
        return scope.get(expr)
    if expr.startswith("eq "):
        left, right = expr[3:].split(" ", 1)
        return _value(left, scope) == right.strip().strip('"')
    raise ValueError(f"unsupported template expression {expr!r}")


def _run(tree: list, scope: dict) -> str:
    out = []
    for node in tree:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_value(node[1], scope) or ""))
        elif node[0] == "if":
            out.append(_run(node[2] if _value(node[1], scope) else node[3], scope))
        else:
            head = node[1]
            names, _, source = head.rpartition(":=") if ":=" in head else ("", "", head)
            index_var, _, item_var = (n.strip() for n in names.partition(","))
            for n, item in enumerate(_value(source.strip(), scope) or []):
                inner = scope | {".": item}
                if index_var:
                    inner[index_var], inner[item_var] = n, item
                out.append(_run(node[2], inner))
    return "".join(out)


def render_go(template: str, messages: list[dict[str, str]], system: str | None) -> str:
    """The prompt Ollama builds: the Modelfile's SYSTEM first when the conversation has no system message."""
    if system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system}, *messages]
    items = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    return _run(_parse(template), {".": {"Messages": items, "System": system}})


def ollama_check(text: str, renderer: Renderer, run_system: str | None = None) -> dict:
    """Render SAMPLES through the Modelfile's TEMPLATE and SYSTEM and compare token for token with the training
    render (renderer.prompt_ids, with the run's shared system message); raises when any differs."""
    template, system = _field(text, "TEMPLATE"), _field(text, "SYSTEM")
    tokenizer = renderer.tokenizer
    checked = []
    for messages in SAMPLES:
        ours = tokenizer.encode(render_go(template or "", messages, system), add_special_tokens=False)
        # Training gave a conversation without a system message the run's shared one (run_system), if any.
        shared = [{"role": "system", "content": run_system}] if run_system and messages[0]["role"] != "system" else []
        trained = renderer.prompt_ids([*shared, *messages])
        if trained[:1] == [tokenizer.bos_token_id] and ours[:1] != trained[:1]:
            ours = [tokenizer.bos_token_id, *ours]  # the runtime adds BOS itself (tokenizer.ggml.add_bos_token)
        if ours != trained:
            raise TunesmithError(
                "the Modelfile's TEMPLATE does not reproduce the training prompt for "
                f"{messages!r}: {tokenizer.decode(ours)!r} vs {tokenizer.decode(trained)!r}"
            )
        checked.append(len(trained))
    return {"conversations": len(checked), "tokens": sum(checked), "identical": True}

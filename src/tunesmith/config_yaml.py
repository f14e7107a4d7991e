"""Reading a config's YAML: the file (never more than a page, never a FIFO), keys given twice, and `key.sub=value`
overrides with YAML-typed values. config.py validates what these return against the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import TunesmithError


class ConfigError(TunesmithError, ValueError):
    """A config file or override that does not fit the schema; the message names the key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden by later keys
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first given on line {first_line[key]}); only one can apply",
                        key_node.start_mark,
                    )
            except TypeError:  # an unhashable key: PyYAML's own check below reports it
                continue
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def yaml_problem(err: yaml.YAMLError) -> str:
    """`LINE: what is wrong` for a YAML error that knows where it happened (1-based line)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        problem = err.problem or "not valid YAML"
        context = f" ({err.context} started on line {err.context_mark.line + 1})" if err.context_mark else ""
        return f"{err.problem_mark.line + 1}: {problem}{context}"
    return f" {err}"


def parse_yaml(text: str) -> Any:
    """YAML as the config reads it: safe types, and a key given twice is an error instead of the last one winning."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-typed value (`3`, `true`, `[q_proj, v_proj]`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or err
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {problem}") from None
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        set_key(raw, *parse_override(item))
    return raw


def set_key(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at the key path (`["train", "lr"]`, or a list entry by position: `["data", "train", "0", ...]`),
    creating sections on the way."""
    node: Any = raw
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list):  # a list entry by position: data.train.0.limit=100
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {'.'.join(path)}: {part} is not an entry of a {len(node)}-entry list")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {path[depth - 1]} is not a section")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


MAX_CONFIG_BYTES = 1 << 20  # a config is a page of YAML; anything larger is the wrong file


def read_config_text(path: Path) -> str:
    """The config file's text, or a ConfigError that says why it cannot be read (never blocks on a FIFO)."""
    try:
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        if not path.is_file():  # a FIFO or device would block or never end
            raise ConfigError(f"{path}: not a regular file")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config file (over 1 MiB)")
        data = path.read_bytes()
    except OSError as err:  # permission denied, a symlink loop, an unreadable disk
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); save the config as UTF-8"
        ) from None

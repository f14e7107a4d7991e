"""`tunesmith config show [KEY]`: the config's sections, keys, types, defaults and help text.

    tunesmith config show                     # every section
    tunesmith config show train               # one section
    tunesmith config show train.lr            # one key: type, default, bounds, allowed values, help
    tunesmith config show method.classifier   # one training method's settings

Everything shown is read from the schema in config.py (annotations, defaults, field metadata, descriptions), so the
text cannot drift from what the config accepts; there is no second copy of the help to keep up to date.
"""

from __future__ import annotations

import difflib
import inspect
import textwrap
import types
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tunesmith.config import RENAMED, Config, ConfigError

WIDTH = 100
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def show_config(key: str | None = None) -> str:
    """The whole schema, or the part KEY names (a section, a key, a method type or a method's key), as text."""
    key = (key or "").strip()
    if key:
        return "\n".join(_resolve(key)).rstrip() + "\n"
    intro = "Every config section and key: type = default, bounds, and what it does. Set a key in a YAML file or on the"
    intro += " command line as section.key=value; `tunesmith config show KEY` shows one section or key."
    lines = _wrap(intro, "")
    for name, field in Config.model_fields.items():
        if members := _members(field):
            lines += ["", *_union_lines(name, field, members, "")]
        elif models := _models_in(field.annotation):
            lines += ["", *_model_lines([name], models[0], "")]
        else:
            lines += _key_lines(name, field, "")
    return "\n".join(lines).rstrip() + "\n"


# -- reading the schema -------------------------------------------------------------------------------------------


def _strip(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The sections a field holds: DatasetSpec for list[DatasetSpec], each member of a union of sections."""
    annotation = _strip(annotation)
    if _is_model(annotation):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _members(field: FieldInfo) -> dict[str, type[BaseModel]]:
    """A union of sections told apart by `type` (the training method): type name -> section; else empty."""
    models = _models_in(field.annotation)
    if len(models) < 2 or not all("type" in m.model_fields for m in models):
        return {}
    return {str(m.model_fields["type"].default): m for m in models}


def _child_path(path: str, name: str, field: FieldInfo) -> str:
    dotted = f"{path}.{name}" if path else name
    return dotted + "[]" if get_origin(_strip(field.annotation)) is list and _models_in(field.annotation) else dotted


def _default(field: FieldInfo) -> str | None:
    """The default as YAML would spell it (factories are called); None when the key is required."""
    if field.is_required():
        return None
    value = field.get_default(call_default_factory=True)
    return _yaml_value(value.model_dump(mode="json") if isinstance(value, BaseModel) else value)


def _yaml_value(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_value(k)}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and value and yaml.safe_load(value) == value:
        return value  # plain text reads back as itself; anything YAML would read differently is quoted below
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


def _type_name(annotation: Any) -> str:
    annotation = _strip(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if inspect.isclass(annotation) and issubclass(annotation, Enum):
        return " | ".join(str(m.value) for m in annotation)
    if _is_model(annotation):
        return "section"
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None and args:
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else _type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _choices(annotation: Any) -> list[str] | None:
    """The values a key allows when they are a fixed set (Literal or enum, also inside a list or with null)."""
    annotation = _strip(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return [str(a) for a in args]
    if inspect.isclass(annotation) and issubclass(annotation, Enum):
        return [str(m.value) for m in annotation]
    if origin is list and args:
        return _choices(args[0])
    if origin in (Union, types.UnionType):
        parts = [["null"] if a is type(None) else _choices(a) for a in args]
        return None if any(p is None for p in parts) else [c for p in parts for c in p or []]
    return None


def _bounds(field: FieldInfo) -> str:
    found = [f"{sign} {getattr(m, name)}" for m in field.metadata for name, sign in _BOUNDS if hasattr(m, name)]
    return ", ".join(found)


# -- rendering ----------------------------------------------------------------------------------------------------


def _wrap(text: str, indent: str, more: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + more) or [indent.rstrip()]


def _key_lines(name: str, field: FieldInfo, indent: str, see: str = "") -> list[str]:
    default = _default(field)
    line = f"{name}: {_type_name(field.annotation)}" + (" (required)" if default is None else f" = {default}")
    if bounds := _bounds(field):
        line += f"  ({bounds})"
    help_text = (field.description or "") + (f" Its keys: [{see}] below." if see else "")
    return [*_wrap(line, indent, "    "), *(_wrap(help_text.strip(), indent + "    ") if help_text else [])]


def _model_lines(paths: list[str], model: type[BaseModel], indent: str) -> list[str]:
    """A section under its heading, its keys, then each section nested in it (a list's entries as `key[]`)."""
    doc = inspect.getdoc(model) if model.__doc__ else ""  # a model without a docstring would show BaseModel's
    if not doc and all(path.endswith("[]") for path in paths):
        doc = "Each entry of the list has these keys."
    lines = _wrap(f"[{', '.join(paths)}]" + (f"  {doc}" if doc else ""), indent, "    ")
    nested: dict[type[BaseModel], list[str]] = {}
    unions: list[str] = []
    for name, field in model.model_fields.items():
        if members := _members(field):
            unions += [line for path in paths for line in ["", *_union_lines(f"{path}.{name}", field, members, indent)]]
            continue
        children = [_child_path(path, name, field) for path in paths]
        subs = _models_in(field.annotation)
        lines += _key_lines(name, field, indent + "  ", ", ".join(children) if subs else "")
        for sub in subs:  # DatasetSpec once, for data.train[] and data.eval[] alike
            nested.setdefault(sub, []).extend(children)
    for sub, sub_paths in nested.items():
        lines += ["", *_model_lines(sub_paths, sub, indent + "  ")]
    return lines + unions


def _union_lines(path: str, field: FieldInfo, members: dict[str, type[BaseModel]], indent: str) -> list[str]:
    head = f"[{path}]  {field.description or ''} {path}.type chooses one of: {', '.join(members)}"
    head += f" (default {_default_member(field)}); each has its own keys."
    lines = _wrap(head, indent, "    ")
    for name, model in members.items():
        lines += ["", *_model_lines([f"{path}.{name}"], model, indent + "  ")]
    return lines


def _default_member(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    return str(default.type) if isinstance(default, BaseModel) else _yaml_value(default)


def _key_detail(path: str, field: FieldInfo, where: str = "") -> list[str]:
    lines = [path + (f"  ({where})" if where else "")]
    rows = [("type", _type_name(field.annotation))]
    if (choices := _choices(field.annotation)) is not None:
        rows.append(("allowed", ", ".join(choices)))
    default = _default(field)
    rows.append(("default", "(required)" if default is None else default))
    if bounds := _bounds(field):
        rows.append(("bounds", bounds))
    rows.append(("help", field.description or ""))
    for label, text in rows:
        lines += _wrap(f"{label + ':':<9}{text}", "  ", " " * 9)
    for sub in _models_in(field.annotation):
        lines += ["", *_model_lines([path], sub, "  ")]
    return lines


# -- finding a KEY ------------------------------------------------------------------------------------------------


def _resolve(key: str) -> list[str]:
    """The lines for KEY: a section, a key, or (through _resolve_member) the training method's part of the schema."""
    if key in RENAMED:
        raise ConfigError(f"config key {key}: renamed: use {RENAMED[key]}")
    parts = key.replace("[]", "").split(".")
    model, path = Config, ""
    while parts:
        name = parts.pop(0)
        field = model.model_fields.get(name)
        if field is None:
            break
        child = _child_path(path, name, field)
        if members := _members(field):
            return _resolve_member(child, field, members, parts, key)
        models = _models_in(field.annotation)
        if not parts:
            return _model_lines([child], models[0], "") if model is Config and models else _key_detail(child, field)
        if len(models) != 1:
            break
        model, path = models[0], child
    raise _unknown(key)


def _resolve_member(
    path: str, field: FieldInfo, members: dict[str, type[BaseModel]], parts: list[str], key: str
) -> list[str]:
    """`method`, `method.type`, `method.classifier`, `method.classifier.loss`, or `method.loss` (from whichever
    method has it, saying which)."""
    if not parts:
        return _union_lines(path, field, members, "")
    if parts == ["type"]:  # the choice between the methods: each one's own `type` field allows only its name
        help_text = " ".join(m.model_fields["type"].description or "" for m in members.values())
        choice = FieldInfo(annotation=Literal[tuple(members)], default=_default_member(field), description=help_text)
        return _key_detail(f"{path}.type", choice)
    if parts[0] in members:
        name = parts.pop(0)
        model = members[name]
        if not parts:
            return _model_lines([f"{path}.{name}"], model, "")
        if len(parts) == 1 and parts[0] in model.model_fields:
            return _key_detail(f"{path}.{parts[0]}", model.model_fields[parts[0]], f"a key of {path}.type: {name}")
        raise _unknown(key)
    found = [
        _key_detail(f"{path}.{parts[0]}", model.model_fields[parts[0]], f"a key of {path}.type: {name}")
        for name, model in members.items()
        if len(parts) == 1 and parts[0] in model.model_fields
    ]
    if not found:
        raise _unknown(key)
    return [line for i, detail in enumerate(found) for line in ([""] if i else []) + detail]


def _known_keys(model: type[BaseModel], path: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        child = f"{path}.{name}" if path else name
        yield child
        members = _members(field)
        for type_name, sub in members.items():
            yield f"{child}.{type_name}"
            for sub_key in sub.model_fields:
                yield f"{child}.{sub_key}"
                yield f"{child}.{type_name}.{sub_key}"
        for sub in [] if members else _models_in(field.annotation):
            yield from _known_keys(sub, child)


def _unknown(key: str) -> ConfigError:
    known = list(dict.fromkeys([*_known_keys(Config, ""), *RENAMED]))
    close = difflib.get_close_matches(key.replace("[]", ""), known, n=3, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else f"sections: {', '.join(Config.model_fields)}"
    return ConfigError(f"unknown config key {key!r}; {hint} (`tunesmith config show` lists every key)")

"""Class 2, configs and CLI arguments: broken YAML, out-of-range values, broken model folders, dangerous output
folders (nothing tunesmith did not write may be deleted), divergent settings, and bad command-line values.

    python benchmarks/robustness/run.py --only config
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml
from cases_args import ARG_CASES
from cases_output import OUTPUT_CASES
from common import Case, Fixtures, Verdict, cli, fail, judge, tiny_config, user_error, write_yaml

ANY_FAILURE = (1, 2, 3)  # divergence may have its own documented non-zero code
NON_FINITE = re.compile(r"non-finite|nan|inf|diverg", re.IGNORECASE)


def _cfg(fx: Fixtures, work: Path, **train: object) -> dict:
    return tiny_config(fx, fx.chat, work / "run", **train)


def _train_with(mutate: Callable[[dict], None], *mentions: str) -> Callable[[Fixtures, Path], Verdict]:
    """`tunesmith train` on the tiny config after `mutate`; must be one clear line naming `mentions`, exit 2."""

    def run(fx: Fixtures, work: Path) -> Verdict:
        cfg = _cfg(fx, work)
        mutate(cfg)
        return user_error(cli("train", write_yaml(work / "c.yaml", cfg), cwd=work), *mentions)

    return run


def _set(section: str, key: str, value: object) -> Callable[[dict], None]:
    return lambda cfg: cfg.setdefault(section, {}).__setitem__(key, value)


def _raw_yaml(text: str | bytes, *mentions: str, verb: str = "train") -> Callable[[Fixtures, Path], Verdict]:
    def run(fx: Fixtures, work: Path) -> Verdict:
        path = work / "c.yaml"
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return user_error(cli(verb, path, cwd=work), *mentions)

    return run


def _yaml_with(fx: Fixtures, work: Path, replace: tuple[str, str]) -> Path:
    text = yaml.safe_dump(_cfg(fx, work), sort_keys=False)
    assert replace[0] in text, replace
    path = work / "c.yaml"
    path.write_text(text.replace(*replace, 1), encoding="utf-8")
    return path


def _text_edit(old: str, new: str, *mentions: str) -> Callable[[Fixtures, Path], Verdict]:
    return lambda fx, work: user_error(cli("train", _yaml_with(fx, work, (old, new)), cwd=work), *mentions)


def _override(*items: str, mentions: tuple[str, ...] = (), verb: str = "train") -> Callable[[Fixtures, Path], Verdict]:
    def run(fx: Fixtures, work: Path) -> Verdict:
        extra = ("--steps", "1") if verb == "plan" else ()
        return user_error(cli(verb, write_yaml(work / "c.yaml", _cfg(fx, work)), *items, *extra, cwd=work), *mentions)

    return run


def _model_folder(broken: Callable[[Path], Path], *mentions: str) -> Callable[[Fixtures, Path], Verdict]:
    def run(fx: Fixtures, work: Path) -> Verdict:
        model = work / "model"
        shutil.copytree(fx.model, model)
        base = broken(model)
        cfg = _cfg(fx, work)
        cfg["model"]["base"] = str(base)
        return user_error(cli("train", write_yaml(work / "c.yaml", cfg), cwd=work), *mentions)

    return run


def _no_weights(model: Path) -> Path:
    for p in model.glob("*.safetensors"):
        p.unlink()
    return model


def _write_file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(model: Path) -> Path:
        (model / name).write_bytes(data)
        return model / name if name.endswith(".gguf") else model

    return make


def _diverges(full: bool = False, **train: object) -> Callable[[Fixtures, Path], Verdict]:
    """Settings that blow the weights up: the run must stop non-zero and never leave NaN weights in final/."""

    def run(fx: Fixtures, work: Path) -> Verdict:
        cfg = _cfg(fx, work, **{"max_steps": 3, **train})
        cfg["adapter"]["method"] = "full" if full else "lora"
        proc = cli("train", write_yaml(work / "c.yaml", cfg), cwd=work)
        if proc.rc == 0:
            bad = _non_finite(work / "run" / "final")
            return fail(f"exit 0 with non-finite weights in final/ ({bad})") if bad else fail("exit 0: not stopped")
        return judge(proc, ANY_FAILURE, [NON_FINITE])

    return run


def _non_finite(folder: Path) -> str:
    import torch
    from safetensors.torch import load_file

    for path in folder.glob("*.safetensors"):
        for name, tensor in load_file(path).items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                return f"{path.name}: {name}"
    return ""


def _fp16(full: bool) -> Callable[[Fixtures, Path], Verdict]:
    """float16 either trains with finite weights or is refused with the reason (exit 2)."""

    def run(fx: Fixtures, work: Path) -> Verdict:
        cfg = _cfg(fx, work, max_steps=2)
        cfg["model"]["dtype"] = "float16"
        cfg["adapter"]["method"] = "full" if full else "lora"
        proc = cli("train", write_yaml(work / "c.yaml", cfg), cwd=work)
        if proc.rc == 0:
            bad = _non_finite(work / "run" / "final")
            return fail(f"float16 finished with non-finite weights ({bad})") if bad else judge(proc, (0,))
        return judge(proc, (2,), [re.compile("float16|fp16", re.IGNORECASE)])

    return run


def _verify_nan(fx: Fixtures, work: Path) -> Verdict:
    proc = cli("verify", write_yaml(work / "c.yaml", _cfg(fx, work, lr=1e30)), "--steps", "2", cwd=work)
    if "agree" in proc.out and proc.rc == 0:
        return fail("verify says the options agree although every loss is NaN")
    return judge(proc, ANY_FAILURE)


def _context_too_long(fx: Fixtures, work: Path) -> Verdict:
    """max_length beyond the model's 512 positions: refused, or trained with a warning that says so."""
    cfg = _cfg(fx, work)
    cfg["data"]["max_length"] = 100_000
    return judge(cli("train", write_yaml(work / "c.yaml", cfg), cwd=work), (0, 2), ["max_length"])


def _model_is_data(fx: Fixtures, work: Path) -> Verdict:
    cfg = _cfg(fx, work)
    cfg["model"]["base"] = str(fx.chat)
    return user_error(cli("train", write_yaml(work / "c.yaml", cfg), cwd=work), "chat.jsonl")


def _data_is_config(fx: Fixtures, work: Path) -> Verdict:
    path = write_yaml(work / "c.yaml", tiny_config(fx, work / "c.yaml", work / "run"))
    return user_error(cli("train", path, cwd=work), "c.yaml")


CONFIG_CASES: dict[str, Callable[[Fixtures, Path], Verdict]] = {
    "config path is a directory": lambda fx, w: user_error(cli("train", w, cwd=w)),
    "config path missing": lambda fx, w: user_error(cli("train", w / "nope.yaml", cwd=w), "nope.yaml"),
    "non-UTF-8 YAML": _raw_yaml(b"model:\n  base: caf\xe9\n", "c.yaml"),
    "YAML syntax error": _raw_yaml("model: {base: [unclosed\n", "c.yaml"),
    "YAML top level is a list": _raw_yaml("- a\n- b\n", "c.yaml"),
    "YAML top level is a number": _raw_yaml("42\n", "c.yaml"),
    "empty config file": _raw_yaml("", "data"),
    "binary config file": _raw_yaml(bytes(range(256)), "c.yaml"),
    "duplicate YAML key": _text_edit("train:\n", "train:\n  lr: 0.1\n  lr: 0.2\n", "lr"),
    "duplicate YAML section": _text_edit("eval:\n", "train: {}\neval:\n", "train"),
    "epochs: .inf": _text_edit("train:\n", "train:\n  epochs: .inf\n", "epochs"),
    "lr: .nan": _text_edit("  lr: 0.005\n", "  lr: .nan\n", "lr"),
    "lr: .inf": _text_edit("  lr: 0.005\n", "  lr: .inf\n", "lr"),
    "warmup_ratio: .nan": _text_edit("train:\n", "train:\n  warmup_ratio: .nan\n", "warmup_ratio"),
    "seed 2**70": _train_with(_set("train", "seed", 2**70), "seed"),
    "seed -1": lambda fx, w: judge(cli("train", write_yaml(w / "c.yaml", _cfg(fx, w, seed=-1)), cwd=w), (0, 2)),
    "max_steps: true": _train_with(_set("train", "max_steps", True), "max_steps"),
    "batch_size: true": _train_with(_set("train", "batch_size", True), "batch_size"),
    "lr as a word": _train_with(_set("train", "lr", "fast"), "lr"),
    "unknown key train.lrr": _train_with(_set("train", "lrr", 0.1), "lrr"),
    "unknown section": _train_with(lambda cfg: cfg.__setitem__("trian", {}), "trian"),
    "max_length beyond the model context": _context_too_long,
    "max_length: 4": _train_with(_set("data", "max_length", 4), "max_length"),
    "eval_fraction: 1.5": _train_with(_set("data", "eval_fraction", 1.5), "eval_fraction"),
    "batch_size not a multiple of micro": _train_with(_set("train", "micro_batch_size", 3), "micro_batch_size"),
    "no training data": _train_with(_set("data", "train", []), "data"),
    "unknown target_modules": _train_with(_set("adapter", "target_modules", ["nonexistent_proj"]), "nonexistent_proj"),
    "data path is the config itself": _data_is_config,
    "override without =": _override("train.lr", mentions=("train.lr",)),
    "override of unknown key": _override("nosuch.key=1", mentions=("nosuch",)),
    "override lr=.inf": _override("train.lr=.inf", mentions=("lr",)),
    "override seed=1e400": _override("train.seed=1e400", mentions=("seed",)),
    "plan with lr=.nan": _override("train.lr=.nan", mentions=("lr",), verb="plan"),
    "model folder without weights": _model_folder(_no_weights, "model"),
    "model corrupt config.json": _model_folder(_write_file("config.json", b"{not json"), "config.json"),
    "model config.json unknown model_type": _model_folder(
        _write_file("config.json", json.dumps({"model_type": "nonexistent-arch"}).encode()), "model"
    ),
    "model config.json empty": _model_folder(_write_file("config.json", b""), "config.json"),
    "model corrupt safetensors": _model_folder(_write_file("model.safetensors", b"\x00" * 64), "model"),
    "model empty .gguf": _model_folder(_write_file("empty.gguf", b""), "empty.gguf"),
    "model fake .gguf": _model_folder(_write_file("fake.gguf", b"GGUF but not really" * 10), "fake.gguf"),
    "model missing path": _train_with(_set("model", "base", "/nonexistent/model"), "/nonexistent/model"),
    "model unknown registry name": _train_with(_set("model", "base", "smollm9-1t"), "smollm9-1t"),
    "model base is a data file": _model_is_data,
    "train.lr=1e30 diverges": _diverges(lr=1e30),
    "weight_decay=1e30 diverges": _diverges(weight_decay=1e30, lr=0.1),
    "full FT lr=1e30 diverges": _diverges(lr=1e30, full=True),
    "float16 full fine-tuning": _fp16(full=True),
    "float16 LoRA": _fp16(full=False),
    "verify with NaN losses": _verify_nan,
}


def cases(fx: Fixtures) -> list[Case]:
    table = {**CONFIG_CASES, **OUTPUT_CASES, **ARG_CASES}
    return [Case("config", name, lambda work, run=run: run(fx, work)) for name, run in table.items()]

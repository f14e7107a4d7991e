"""`tunesmith config show [KEY]`: the schema's sections, keys, defaults, bounds and help, read from config.py.

pytest tests/unit/test_config_show.py -q
"""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from tunesmith.config import METHOD_SECTIONS, RENAMED, Config, ConfigError, DatasetSpec, IdSelection
from tunesmith.config_show import WIDTH, show_config


def flat(text: str) -> str:
    """The text with its wrapping undone, so a help sentence can be found whole."""
    return " ".join(text.split())


def sections() -> dict[str, type[BaseModel]]:
    """Every section the schema has, by the heading it is shown under."""
    found: dict[str, type[BaseModel]] = {f"method.{name}": model for name, model in METHOD_SECTIONS.items()}
    for name, field in Config.model_fields.items():
        if name != "method":
            found[name] = field.annotation  # type: ignore[assignment]
    found["data.train[], data.eval[]"] = DatasetSpec
    found["data.train[].ids, data.eval[].ids"] = IdSelection
    return found


def test_full_output_names_every_section_and_key_with_its_help() -> None:
    text = show_config()
    for heading, model in sections().items():
        assert f"[{heading}]" in text, heading
        for name, field in model.model_fields.items():
            assert re.search(rf"^ +{name}: ", text, re.MULTILINE), f"{heading}.{name}: key line missing"
            assert flat(field.description or "") in flat(text), f"{heading}.{name}: help text missing"
    assert "lr: float = 0.0002  (> 0)\n" in text
    assert "Peak learning rate." in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH


def test_sections_come_in_schema_order() -> None:
    text = show_config()
    positions = [text.index(f"\n[{name}]") for name in Config.model_fields]
    assert positions == sorted(positions)


def test_a_list_of_sections_shows_its_entries_keys_under_their_own_heading() -> None:
    text = show_config("data")
    assert "[data.train[], data.eval[]]" in text
    assert "path: str (required)" in text  # DatasetSpec.path has no default
    assert "Its keys: [data.train[]] below." in flat(text)
    assert "[data.train[].ids, data.eval[].ids]" in text
    assert "[train]" not in text


def test_a_section_shows_only_its_own_keys() -> None:
    text = show_config("train")
    assert text.startswith("[train]\n")
    assert "micro_batch_size: int = 4  (>= 1)" in text
    assert "[model]" not in text and "base:" not in text


def test_a_key_shows_type_default_bounds_and_help() -> None:
    text = show_config("train.lr")
    assert text.splitlines() == [
        "train.lr",
        "  type:    float",
        "  default: 0.0002",
        "  bounds:  > 0",
        "  help:    Peak learning rate.",
    ]
    assert "bounds:  >= 0, <= 2147483647" in show_config("train.seed")
    assert "bounds:  >= 0, < 1" in show_config("train.warmup_ratio")


def test_a_literal_key_lists_its_allowed_values() -> None:
    text = show_config("task.type")
    assert "allowed: none, classification, summarization, qa, translation" in text
    assert "default: none" in text
    assert "allowed: auto, chat, instruction, completion, text, classification, preference" in show_config(
        "data.train.kind"
    )  # an enum, inside a list of sections: `data.train[].kind` works as well
    assert "allowed: leakage, pii" in show_config("audit.allow")


def test_factory_defaults_are_shown_by_calling_the_factory() -> None:
    text = show_config("task.baselines")
    assert "default: [likelihood_zero_shot, likelihood_few_shot, generation_few_shot]" in text
    assert "default: []" in show_config("data.train")
    assert "default: [0.9, 0.999]" in show_config("train.betas")
    assert "default: null" in show_config("train.max_steps")


def test_a_method_type_shows_its_own_keys() -> None:
    text = show_config("method.classifier")
    assert text.startswith("[method.classifier]")
    for key in ("loss: ce | focal = ce", "class_weights: none | balanced = none", "focal_gamma: float = 2.0  (>= 0)"):
        assert key in text
    assert "[method.sft]" not in text
    whole = show_config("method")
    assert f"method.type chooses one of: {', '.join(METHOD_SECTIONS)} (default sft)" in flat(whole)
    assert "[method.sft]" in whole and "[method.classifier]" in whole


def test_a_method_key_is_found_in_the_method_that_has_it() -> None:
    text = show_config("method.loss")  # two methods have a loss: both are shown, each under its type
    classifier, dpo = text.split("\n\n")
    assert classifier.splitlines()[0] == "method.loss  (a key of method.type: classifier)"
    assert dpo.splitlines()[0] == "method.loss  (a key of method.type: dpo)"
    assert "allowed: ce, focal" in classifier and "allowed: sigmoid, ipo, hinge" in dpo
    assert show_config("method.classifier.loss") == classifier + "\n"
    choice = show_config("method.type")
    assert f"allowed: {', '.join(METHOD_SECTIONS)}" in choice
    assert "default: sft" in choice


@pytest.mark.parametrize(
    ("key", "closest"),
    [
        ("train.lrr", "train.lr"),
        ("trian", "train"),
        ("method.lose", "method.loss"),
        ("data.train.pth", "data.train.path"),
    ],
)
def test_an_unknown_key_names_the_closest(key: str, closest: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"unknown config key '{key}'; closest: {closest}")) as caught:
        show_config(key)
    assert "tunesmith config show" in str(caught.value)


def test_a_key_with_nothing_close_lists_the_sections() -> None:
    with pytest.raises(ConfigError, match="sections: model, data, adapter, train"):
        show_config("zzzz")
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'method.sft.loss'")):
        show_config("method.sft.loss")  # loss belongs to the classifier only


def test_a_renamed_key_names_the_new_one() -> None:
    with pytest.raises(ConfigError, match=r"task\.objective: renamed: use method\.type") as caught:
        show_config("task.objective")
    assert RENAMED["task.objective"] in str(caught.value)

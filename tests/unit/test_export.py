"""`tunesmith export`: merged weights, GGUF and an Ollama Modelfile from tiny runs of the on-disk Llama, each read
back by a reader that is not its writer (plain transformers, transformers' GGUF loader) and compared with the run's
own model; the Modelfile's TEMPLATE rendered and compared token for token with the training render; refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gguf
import pytest
import torch
import yaml
from tiny_runs import head_config, tiny_config, write_chat_data, write_pair_data, write_toy

from tunesmith.cli import main
from tunesmith.data.templates import Renderer, _plain_prompt
from tunesmith.models.gguf_write import ExportError, _bpe_pre
from tunesmith.models.ollama import (
    CHATML,
    LLAMA3,
    PLAIN,
    PLAIN_JINJA,
    SAMPLES,
    TemplateNotSupported,
    _quote,
    modelfile,
    ollama_check,
    render_go,
)
from tunesmith.models.trained import load_run
from tunesmith.rundir import RunDir


def _train(root: Path, model_dir: Path, name: str, **extra) -> Path:
    data = write_chat_data(root / f"{name}.jsonl", n=32)
    cfg = tiny_config(model_dir, data, root / name, max_steps=3, lr=5e-2, **extra)
    cfg["audit"] = {"enabled": False}
    cfg["data"]["eval_fraction"] = 0.25  # 8 held-out rows for the parity report
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["train", str(root / f"{name}.yaml")]) == 0
    return root / name


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("export"), tiny_model_dir, "lora")


@pytest.fixture(scope="module")
def exported(lora_run) -> Path:
    out = lora_run.parent / "lora-export"
    code = main(["export", str(lora_run), "--to", "merged", "gguf", "ollama", "--quant", "f16", "q8_0",
                 "--out", str(out), "--rows", "8"])  # fmt: skip
    assert code == 0
    return out


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


IDS = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 2]


def test_merged_export_is_plain_transformers_and_the_same_model(lora_run, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reference = load_run(RunDir(lora_run), torch.device("cpu"), torch.float32).model
    merged = AutoModelForCausalLM.from_pretrained(exported / "merged", dtype=torch.float32)
    assert not (exported / "merged" / "adapter_config.json").exists()
    torch.testing.assert_close(_logits(merged, IDS), _logits(reference, IDS), atol=1e-5, rtol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(exported / "merged")
    assert tokenizer.chat_template == load_run(RunDir(lora_run), torch.device("cpu")).tokenizer.chat_template


def test_gguf_reads_back_through_transformers_as_the_same_model(lora_run, exported):
    from transformers import AutoModelForCausalLM

    reference = load_run(RunDir(lora_run), torch.device("cpu"), torch.float32).model
    want = _logits(reference, IDS)
    f16 = AutoModelForCausalLM.from_pretrained(exported, gguf_file="model-f16.gguf", dtype=torch.float32)
    q8 = AutoModelForCausalLM.from_pretrained(exported, gguf_file="model-q8_0.gguf", dtype=torch.float32)
    f16_err = (_logits(f16, IDS) - want).abs().max()
    q8_err = (_logits(q8, IDS) - want).abs().max()
    assert f16_err < 0.02  # f16 rounding of each weight; a wrong permutation or name gives errors of order 1
    assert f16_err < q8_err < 0.2


def test_gguf_metadata_has_the_training_template_tokenizer_and_lineage(lora_run, exported):
    reader = gguf.GGUFReader(exported / "model-q8_0.gguf")
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    run = RunDir(lora_run)
    tokenizer = load_run(run, torch.device("cpu")).tokenizer
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.tokens"][: len(tokenizer)] == [
        tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))
    ]
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert fields["tunesmith.run"] == str(lora_run.resolve())
    assert fields["general.file_type"] == 7  # MOSTLY_Q8_0
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == "Q8_0" and kinds["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in kinds  # tied to token_embd, as llama.cpp expects


def test_export_json_holds_a_passing_parity_report(exported):
    summary = json.loads((exported / "export.json").read_text())
    parity = {p["artifact"]: p for p in summary["parity"] if p["reader"] == "transformers"}
    assert set(parity) == {"merged", "model-f16.gguf", "model-q8_0.gguf"}
    assert summary["passed"] and summary["rows"] == 8
    assert parity["merged"]["answers_identical"] == 1.0 and parity["merged"]["mean_kl"] < 1e-6
    assert parity["merged"]["next_token_identical"] == 1.0 and parity["model-f16.gguf"]["next_token_identical"] >= 0.99
    assert parity["model-q8_0.gguf"]["mean_kl"] >= parity["model-f16.gguf"]["mean_kl"]
    assert all(abs(p["loss_delta"]) < 0.05 for p in parity.values())
    assert summary["ollama_template"]["identical"] and summary["files"]["model-q8_0.gguf"]["sha256"]
    assert not list(exported.parent.glob(".lora-export.part-*"))  # the staging folder was renamed, not left


def test_rounding_formats_are_held_to_the_next_token_and_the_kl_and_a_merged_model_to_its_answers():
    """Identical greedy answers cascade from the first token that differs, so their share falls with answer length
    for any rounding format: q8_0 with 47.5% identical 48-token answers, a KL of 7e-4 and the next token agreeing at
    99% of positions is what q8_0 does, and passes; the same agreement at 90% does not. A merged model is the same
    function: it must give the same answers."""
    from tunesmith.eval.parity import Parity, check

    def parity(kind: str, answers: float, next_token: float, kl: float) -> Parity:
        return check(Parity("a", kind, "transformers", 40, answers, answers, next_token, kl, 1.0, 1.0))

    assert parity("q8_0", 0.475, 0.99, 7e-4).passed
    worse = parity("q8_0", 0.475, 0.90, 7e-4)
    assert not worse.passed and worse.reasons == [
        "the most likely next token is the reference's at 90.0% of answer positions (at least 95.0% required)"
    ]
    assert not parity("q8_0", 1.0, 1.0, 0.05).passed  # the KL still bounds it
    merged = parity("merged", 0.90, 1.0, 1e-9)
    assert not merged.passed and "90.0% of greedy answers identical" in merged.reasons[0]
    assert parity("f16", 0.95, 0.999, 2e-6).passed and not parity("f16", 1.0, 0.98, 2e-6).passed


def test_llama_cpp_runs_the_gguf_as_the_run_trained_it(exported):
    """llama.cpp itself (llama-cpp-python, which `make test` builds) reads each GGUF: same greedy answers, a KL of
    rounding size, and its tokenizer, built from the file's metadata, splits the prompts as the training one does."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make test installs it)")
    summary = json.loads((exported / "export.json").read_text())
    runtime = {p["artifact"]: p for p in summary["parity"] if p["reader"] == "llama.cpp"}
    assert set(runtime) == {"model-f16.gguf", "model-q8_0.gguf"}
    for p in runtime.values():
        assert p["passed"] and p["tokenizer_identical"] == 1.0 and p["prompts"] == 8
        assert p["answers_identical"] >= 0.875 and abs(p["loss_delta"]) < 0.05
    assert runtime["model-f16.gguf"]["mean_kl"] < 5e-3


def test_q4_k_m_is_quantised_by_llama_cpp_and_read_back_by_both_readers(tiny_model_dir, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make test installs it)")
    run = _train(tmp_path, tiny_model_dir, "q4run")  # its own run: an export rewrites the run's export record
    out = tmp_path / "q4"
    assert main(["export", str(run), "--to", "gguf", "--quant", "q4_k_m", "--out", str(out), "--rows", "8"]) == 0
    fields = gguf.GGUFReader(out / "model-q4_k_m.gguf").fields
    assert fields["general.file_type"].contents() == 15  # MOSTLY_Q4_K_M, written by llama.cpp's quantizer
    parity = json.loads((out / "export.json").read_text())["parity"]
    assert [p["reader"] for p in parity] == ["transformers", "llama.cpp"]
    assert all(p["passed"] and 0 < p["mean_kl"] < 0.5 for p in parity)


def test_the_gguf_names_the_pre_tokenizer_llama_cpp_must_split_words_with():
    """A byte-level BPE tokenizer's word-splitting rule, read from tokenizer.json, as llama.cpp names it; written as
    "default" before, it made llama.cpp split " 2" as " " + "2" where training saw " 2"."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert _bpe_pre(byte_level) == "gpt-2"
    digits = {"type": "Digits", "individual_digits": True}
    assert _bpe_pre({"type": "Sequence", "pretokenizers": [digits, byte_level]}) == "smollm"
    words = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"  # Llama 3's tokenizer.json
    llama3 = words + r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    split = {"type": "Split", "pattern": {"Regex": llama3}, "behavior": "Isolated"}
    no_regex = byte_level | {"use_regex": False}
    assert _bpe_pre({"type": "Sequence", "pretokenizers": [split, no_regex]}) == "llama-bpe"
    other = split | {"pattern": {"Regex": r"\p{L}+|\s+"}}
    with pytest.raises(ExportError, match="Split \\+ ByteLevel"):
        _bpe_pre({"type": "Sequence", "pretokenizers": [other, no_regex]})


def test_the_run_records_the_export_in_its_card_and_report(lora_run, exported):
    run = RunDir(lora_run)
    assert json.loads(run.eval_file("export").read_text())["folder"] == str(exported.resolve())
    card = run.model_card.read_text()
    assert card.count("## Export") == 1 and "model-q8_0.gguf" in card
    assert "Export parity" in run.report.read_text() and "model-f16.gguf" in run.report.read_text()


def test_modelfile_reproduces_the_training_prompt(lora_run, exported):
    text = (exported / "Modelfile").read_text()
    assert text.startswith("FROM ./model-f16.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """You are a tiny test assistant."""' in text  # the template's own default system message
    tokenizer = load_run(RunDir(lora_run), torch.device("cpu")).tokenizer
    renderer = Renderer(tokenizer)
    for messages in SAMPLES:
        rendered = render_go(CHATML, messages, "You are a tiny test assistant.")
        assert rendered == renderer.render_prompt(messages)


def test_ollama_check_catches_a_template_that_differs(tiny_tokenizer):
    renderer = Renderer(tiny_tokenizer)
    good = modelfile("m.gguf", renderer, None)
    assert ollama_check(good, renderer)["identical"]
    with pytest.raises(Exception, match="does not reproduce the training prompt"):
        ollama_check(good.replace("<|im_start|>assistant\n", "<|im_start|>assistant"), renderer)
    with pytest.raises(Exception, match="does not reproduce the training prompt"):
        ollama_check(good.replace("You are a tiny test assistant.", "Other."), renderer)


# A chat template in Llama 3's layout (header tokens around the role, <|eot_id|> after each turn, BOS first).
LLAMA3_JINJA = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_a_llama3_template_gets_a_modelfile_that_renders_as_training(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
    )
    tokenizer.chat_template = LLAMA3_JINJA
    renderer = Renderer(tokenizer)
    text = modelfile("m.gguf", renderer, "Answer briefly.")
    assert f"TEMPLATE {_quote(LLAMA3)}" in text and 'PARAMETER stop "<|eot_id|>"' in text
    assert ollama_check(text, renderer, "Answer briefly.")["identical"]
    with pytest.raises(Exception, match="does not reproduce the training prompt"):  # the run trained without it
        ollama_check(text, renderer, None)
    tokenizer.chat_template = LLAMA3_JINJA.replace("\n\n", "\n")  # another layout: refused with what it renders
    with pytest.raises(TemplateNotSupported, match="none of ChatML, Llama 3"):
        modelfile("m.gguf", Renderer(tokenizer), None)


def test_plain_format_templates_render_as_training(tiny_tokenizer):
    from jinja2 import Template

    for messages in [[{"role": "user", "content": "Review: fine.\nIs it good?"}], *SAMPLES]:
        want = _plain_prompt(messages)
        assert render_go(PLAIN, messages, None) == want
        assert Template(PLAIN_JINJA).render(messages=messages, add_generation_prompt=True) == want


def test_export_refusals_are_one_line_and_exit_2(lora_run, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    assert main(["export", str(lora_run), "--out", str(busy)]) == 2
    assert "not empty" in capsys.readouterr().err and (busy / "mine.txt").read_text() == "keep"
    assert main(["export", str(lora_run), "--to", "gguf", "--quant", "q3", "--out", str(tmp_path / "x")]) == 2
    assert "unknown quantisation" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((lora_run / "config.yaml").read_text())
    assert main(["export", str(unfinished), "--out", str(tmp_path / "z")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


def test_an_unsupported_architecture_is_refused_before_anything_is_written(lora_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    base = tmp_path / "gpt2-base"
    shutil.copytree(json.loads((run / "final" / "adapter_config.json").read_text())["base_model_name_or_path"], base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(config | {"model_type": "gpt2"}))
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    (run / "final" / "adapter_config.json").write_text(json.dumps(adapter | {"base_model_name_or_path": str(base)}))
    assert main(["export", str(run), "--to", "gguf", "--out", str(tmp_path / "out")]) == 2
    assert "'gpt2' model" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_dpo_run_exports_and_is_checked_on_its_chosen_answers(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, write_pair_data(tmp_path / "pairs.jsonl"), tmp_path / "dpo", max_steps=2)
    cfg["audit"] = {"enabled": False}
    cfg["method"] = {"type": "dpo", "beta": 0.1}
    cfg["data"]["eval_fraction"] = 0.25
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["train", str(tmp_path / "dpo.yaml")]) == 0
    assert main(["export", str(tmp_path / "dpo"), "--to", "gguf", "--quant", "f16", "--rows", "6"]) == 0
    summary = json.loads((tmp_path / "dpo" / "export" / "export.json").read_text())
    assert summary["rows"] == 6 and summary["passed"] and summary["parity"][0]["mean_kl"] < 1e-3


def test_a_classifier_run_exports_as_a_sequence_classification_model(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    root = tmp_path
    cfg = head_config(tiny_model_dir, write_toy(root / "labels.jsonl"), root / "head", max_steps=2, lr=5e-2)
    (root / "head.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["train", str(root / "head.yaml")]) == 0
    assert main(["export", str(root / "head"), "--to", "gguf", "--out", str(root / "g")]) == 2
    assert "exports only --to merged" in capsys.readouterr().err
    assert main(["export", str(root / "head"), "--out", str(root / "m"), "--rows", "6"]) == 0
    merged = AutoModelForSequenceClassification.from_pretrained(root / "m" / "merged", dtype=torch.float32)
    reference = load_run(RunDir(root / "head"), torch.device("cpu"), torch.float32).model
    torch.testing.assert_close(_logits(merged, IDS[:-1])[-1], _logits(reference, IDS[:-1])[-1], atol=1e-5, rtol=1e-5)
    summary = json.loads((root / "m" / "export.json").read_text())
    assert summary["passed"] and summary["parity"][0]["max_logit_diff"] < 1e-4


def test_serve_answers_from_a_merged_export_as_from_the_run(lora_run, exported, tiny_model_dir):
    from fastapi.testclient import TestClient

    from tunesmith.serve.app import create_app
    from tunesmith.serve.settings import ServeSettings

    settings = ServeSettings(runs_dir=lora_run.parent, bases=[str(tiny_model_dir), str(exported / "merged")], workers=0)
    messages = [{"role": "user", "content": "what is 3 plus 4?"}]
    with TestClient(create_app(settings)) as client:
        answers = {}
        for model in ("merged", "ft:tiny-llama:lora"):
            body = {"model": model, "messages": messages, "max_tokens": 12, "temperature": 0}
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            answers[model] = response.json()["choices"][0]["message"]["content"]
    assert answers["merged"] == answers["ft:tiny-llama:lora"]

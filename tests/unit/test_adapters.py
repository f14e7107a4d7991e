"""Adapter variants (adapter.dora, rslora, init, lora_plus_ratio) on the tiny Llama: each starts exactly at the base,
pissa/olora adapters are saved converted so they apply to the unchanged base on disk, and LoRA+ gives the B factors
their own learning rate.

pytest tests/unit/test_adapters.py -q
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import build_config
from tunesmith.models.loading import add_lora, save_initial_adapter, save_weights
from tunesmith.recipes.train import run_training
from tunesmith.training.loop import build_optimizer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_chat_data(tmp_path_factory.mktemp("adapters") / "train.jsonl", n=24)


def _base(path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[1, 5, 9, 23, 42, 7, 11, 3]])


@pytest.mark.parametrize(
    "variant",
    [{"dora": True}, {"rslora": True}, {"init": "gaussian"}, {"init": "pissa"}, {"init": "olora"}],
    ids=["dora", "rslora", "gaussian", "pissa", "olora"],
)
def test_every_variant_starts_at_the_base(tiny_model_dir, data, tmp_path, variant):
    """Before training the adapted model computes what the base computes: pissa and olora move part of each weight
    into the adapter, the others start with B = 0."""
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run"))
    adapter = cfg.adapter.model_copy(update=variant)
    expected = _logits(_base(tiny_model_dir), IDS)
    model = add_lora(_base(tiny_model_dir), adapter).eval()
    assert torch.allclose(_logits(model, IDS), expected, atol=1e-4)
    if variant.get("init") in ("pissa", "olora"):
        weight = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
        original = _base(tiny_model_dir).model.layers[0].self_attn.q_proj.weight
        assert not torch.allclose(weight, original)  # the principal part moved out of the base weight


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_a_moved_base_adapter_is_saved_for_the_unchanged_base(tiny_model_dir, data, tmp_path, init):
    """Trained factors (here: perturbed at random) saved against the initial adapter load with plain peft onto the
    base as it is on disk and give the trained model's logits."""
    from peft import PeftModel

    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run"))
    model = add_lora(_base(tiny_model_dir), cfg.adapter.model_copy(update={"init": init})).eval()
    save_initial_adapter(model, tmp_path / "initial")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    trained = _logits(model, IDS)
    save_weights(model, tmp_path / "final", tmp_path / "initial")
    loaded = PeftModel.from_pretrained(_base(tiny_model_dir), tmp_path / "final").eval()
    assert loaded.peft_config["default"].r == 2 * cfg.adapter.r
    assert not torch.allclose(trained, _logits(_base(tiny_model_dir), IDS), atol=1e-3)  # training changed something
    assert torch.allclose(_logits(loaded, IDS), trained, atol=1e-4)


def test_lora_plus_gives_b_its_own_learning_rate(tiny_model_dir, data, tmp_path):
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run"))
    model = add_lora(_base(tiny_model_dir), cfg.adapter)
    optimizer, scheduler = build_optimizer(model, cfg.train, 10, b_lr_ratio=16.0)
    names = {id(p): n for n, p in model.named_parameters()}
    fast = [g for g in optimizer.param_groups if any("lora_B" in names[id(p)] for p in g["params"])]
    assert len(fast) == 1 and all("lora_B" in names[id(p)] for p in fast[0]["params"])
    rest = [g for g in optimizer.param_groups if g is not fast[0]]
    assert all("lora_B" not in names[id(p)] for g in rest for p in g["params"])
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        assert fast[0]["lr"] == pytest.approx(16.0 * rest[0]["lr"])  # the schedule scales both alike
    plain, _ = build_optimizer(model, cfg.train, 10)
    assert len(plain.param_groups) == len(rest)


@pytest.mark.parametrize(
    "variant",
    [{"init": "pissa", "lora_plus_ratio": 4.0, "rslora": True}, {"dora": True}],
    ids=["pissa-loraplus-rslora", "dora"],
)
def test_a_variant_run_trains_and_its_final_model_loads(tiny_model_dir, data, tmp_path, variant):
    """The whole run (packing, fp32): it learns, and final/ is an adapter plain peft loads on
    the base on disk (converted to rank 2r for pissa)."""
    settings = tiny_config(tiny_model_dir, data, tmp_path / "run", max_steps=4)
    settings["adapter"] |= variant
    run = run_training(build_config(settings), log=lambda *_: None)
    config = json.loads((run.run_dir / "final" / "adapter_config.json").read_text())
    moved = variant.get("init") == "pissa"
    assert config["r"] == (8 if moved else 4) and config["use_dora"] == bool(variant.get("dora"))
    assert (run.run_dir / "initial-adapter").is_dir() == moved
    assert run.tuned["metrics"]["loss"] < run.base["metrics"]["loss"]

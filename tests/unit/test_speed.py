"""Speed options change nothing but speed: packing, chunked cross-entropy, length grouping, activation
checkpointing and compile, each against the plain computation on the tiny Llama; and `tunesmith verify`.

pytest tests/unit/test_speed.py -q
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from peft.helpers import disable_input_dtype_casting
from tiny_runs import tiny_config, write_chat_data
from transformers.masking_utils import create_causal_mask

from tunesmith.config import build_config
from tunesmith.data.templates import IGNORE, Encoded, Renderer
from tunesmith.eval.runner import evaluate_loss
from tunesmith.models.loading import add_lora, cpu_has_bf16, load_base, load_tokenizer, training_precision
from tunesmith.training.attention import SEGMENTS, Regroup, Ungroup, row_bounds, segments, use_segment_attention
from tunesmith.training.chunked_ce import linear_cross_entropy
from tunesmith.training.frozen import copies_for, frozen_in
from tunesmith.training.objectives import CausalLMObjective, collate
from tunesmith.training.order import build_order, epoch_order
from tunesmith.training.packing import best_fit_decreasing, pack
from tunesmith.training.prepare import prepare_data
from tunesmith.training.speed import apply_speed_options

needs_bf16_cpu = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speed")
    data = write_chat_data(tmp / "train.jsonl", n=24)
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp / "run"))
    tokenizer = load_tokenizer(tiny_model_dir)
    rows = prepare_data(cfg, Renderer(tokenizer, "auto", 128)).train
    return cfg, rows, tokenizer.pad_token_id


def lora_model(cfg, seed: int = 0):
    base = load_base(cfg.model, torch.device("cpu"), torch.float32)
    torch.manual_seed(seed)
    return add_lora(base.model, cfg.adapter)


def loss_and_grads(model, batch, objective=None):
    model.zero_grad(set_to_none=True)
    parts = (objective or CausalLMObjective())(model, batch)
    (parts.loss_sum / parts.tokens).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(parts.loss_sum.detach()), parts.tokens, parts.correct, grads


def assert_close_grads(a: dict, b: dict, rtol: float = 1e-4) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        scale = float(b[name].abs().max()) or 1.0
        assert float((a[name] - b[name]).abs().max()) <= rtol * scale, name


def test_best_fit_decreasing_fills_tightly_and_keeps_every_item():
    bins = best_fit_decreasing([60, 50, 40, 30, 20, 10, 120], capacity=100)
    assert sorted(i for b in bins for i in b) == list(range(7))
    lengths = [60, 50, 40, 30, 20, 10, 120]
    assert [sum(lengths[i] for i in b) for b in bins] == [120, 100, 100, 10]  # an over-long item sits alone


def test_pack_restarts_positions_per_row_and_gives_no_padding_mask():
    rows = [Encoded([1, 2, 3], [IGNORE, 2, 3], "a", 1), Encoded([4, 5], [IGNORE, 5], "a", 2)]
    batch = pack(rows, pad_id=0, capacity=8)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert batch.labels.tolist() == [[IGNORE, 2, 3, IGNORE, 5]]  # the second row's first token is no target
    assert batch.real_tokens == 5 and batch.trained_tokens == 3
    assert set(batch.model_inputs()) == {"input_ids", "position_ids", "use_cache"}  # the restarts mark the rows
    assert row_bounds(batch.position_ids) == [[0, 3, 5]]
    two = pack([*rows, Encoded([6, 7, 8, 9, 10, 11], [IGNORE] * 6, "a", 3)], pad_id=0, capacity=6)
    # The padding after the second bin's rows is a row of its own (positions count on from 0).
    assert two.position_ids.tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 0, 1, 0]]
    assert row_bounds(two.position_ids) == [[0, 6], [0, 3, 5, 6]]


@pytest.mark.parametrize("attention", ["sdpa", SEGMENTS])
@pytest.mark.parametrize("capacity", [2048, 160])
def test_packed_loss_and_gradients_equal_padded(setup, attention, capacity):
    """transformers' own block-diagonal mask (sdpa) and row-by-row attention both equal the padded batch, with all
    rows in one sequence (2048) and spread over several padded ones (160)."""
    cfg, rows, pad = setup
    model = lora_model(cfg)
    if attention == SEGMENTS:
        assert use_segment_attention(model)
    assert model.get_base_model().config._attn_implementation == attention
    padded = loss_and_grads(model, collate(rows[:8], pad))
    packed_batch = pack(rows[:8], pad, capacity=capacity)
    assert (packed_batch.input_ids.shape[0] == 1) == (capacity == 2048)  # all rows in one sequence, or several
    packed = loss_and_grads(model, packed_batch)
    assert packed[0] == pytest.approx(padded[0], rel=1e-5) and packed[1:3] == padded[1:3]
    assert_close_grads(packed[3], padded[3])


def test_segments_gather_each_packed_row_into_one_padded_batch_of_rows():
    """Packed rows become rows of one batch, padded at their ends with a zero row's index (10 here); the real slots,
    in order, are every position, and moving a tensor to rows and back is exact both ways, gradients included."""
    seg = segments(torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]))
    assert seg.gather.tolist() == [[0, 1, 2], [3, 4, 10], [5, 6, 10], [7, 8, 9]]
    assert seg.gather.flatten()[seg.keep].tolist() == list(range(10)) and not seg.single
    flat = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    grid = Regroup.apply(flat, seg.gather, seg.keep)
    assert grid[1, 2].abs().sum() == 0 and torch.equal(grid[3], flat[7:10])  # a slot past a row's end reads zeros
    torch.testing.assert_close(Ungroup.apply(grid, seg.gather, seg.keep), flat, rtol=0, atol=0)
    torch.autograd.gradcheck(lambda x: Regroup.apply(x, seg.gather, seg.keep), (flat,))
    grid_in = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda g: Ungroup.apply(g, seg.gather, seg.keep), (grid_in,))
    assert segments(torch.tensor([[0, 1, 2], [0, 1, 2]])).single  # unpacked rows: plain causal attention


@needs_bf16_cpu
def test_frozen_copies_change_no_number_and_leave_the_model_fp32(setup):
    """Under bf16 autocast the frozen base weights pre-cast once, and LoRA inputs left in bf16 (peft's cast to the
    fp32 factors skipped), give the same loss and gradients, bit for bit, as autocast casting everything every step;
    outside the block the model holds its own fp32 weights again, and the copies are remade when a frozen weight
    changes."""
    cfg, rows, pad = setup
    model = lora_model(cfg)
    batch = pack(rows[:8], pad, capacity=2048)

    def run(fast: bool):
        with (
            frozen_in(model, torch.bfloat16 if fast else None),
            disable_input_dtype_casting(model, active=fast),
            torch.autocast("cpu", dtype=torch.bfloat16),
        ):
            return loss_and_grads(model, batch)

    plain, fast = run(False), run(True)
    assert fast[0] == plain[0] and fast[1:3] == plain[1:3]
    assert all(torch.equal(fast[3][n], plain[3][n]) for n in plain[3])
    q = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert q.weight.dtype == torch.float32 and not q.weight.requires_grad
    with frozen_in(model, torch.bfloat16):
        assert q.weight.dtype == torch.bfloat16  # the copy is what the forward and backward passes use
    copies = copies_for(model, torch.bfloat16)
    assert copies.nbytes > 0 and copies is copies_for(model, torch.bfloat16)  # made once, kept
    with torch.no_grad():
        q.weight.mul_(2)  # a frozen weight changed (a merge would): the copies no longer stand for it
    assert copies_for(model, torch.bfloat16) is not copies


def test_kept_freed_memory_is_reused_without_new_page_faults():
    """After keep_freed_memory, a block freed and allocated again comes back from malloc's heap (once malloc has
    settled: it takes a few rounds to start reusing): touching it again costs no page faults, where by default each
    64 MiB block is a fresh mapping faulted in page by page."""
    probe = (
        "import resource, sys, torch\n"
        "from tunesmith.training.memory import keep_freed_memory\n"
        "assert not sys.argv[1:] or keep_freed_memory()\n"
        "for _ in range(12):\n"
        "    torch.ones(16 << 20)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(5):\n"
        "    torch.ones(16 << 20)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )

    def faults(*flag: str) -> int:
        done = subprocess.run([sys.executable, "-c", probe, *flag], capture_output=True, text=True, check=True)
        return int(done.stdout)

    kept, default = faults("keep"), faults()
    assert default >= 5 * 32  # at least one fault per 2 MiB (huge) page of each fresh block; 80,000 with 4 KiB pages
    assert kept < default / 10


@needs_bf16_cpu
def test_a_bounded_kernel_cache_stops_memory_growing_with_new_shapes():
    """bf16 matmuls of 1,600 different shapes (as packed micro-batches have): with oneDNN's default cache the
    process keeps far more memory it never frees than with the cache bounded to KERNEL_CACHE kernels, and a value the
    user set is kept."""
    probe = (
        "import ctypes, sys, torch\n"
        "from tunesmith.training.memory import bound_kernel_cache, current_rss\n"
        "assert not sys.argv[1:] or bound_kernel_cache()\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "w = torch.randn(256, 64, dtype=torch.bfloat16)\n"
        "torch.nn.functional.linear(torch.randn(8, 64, dtype=torch.bfloat16), w)\n"
        "libc.malloc_trim(0)\n"
        "before = current_rss()\n"
        "for m in range(9, 1609):\n"
        "    torch.nn.functional.linear(torch.randn(m, 64, dtype=torch.bfloat16), w)\n"
        "libc.malloc_trim(0)\n"
        "print(current_rss() - before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}

    def growth(*flag: str) -> int:
        done = subprocess.run([sys.executable, "-c", probe, *flag], capture_output=True, text=True, check=True, env=env)
        return int(done.stdout)

    bounded, default = growth("bound"), growth()
    assert bounded < 0.75 * default, (bounded, default)
    kept = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tunesmith.training.memory import bound_kernel_cache as b; import os; "
            "print(b(), os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
    )
    assert kept.stdout.split() == ["False", "64"]


def test_eval_loss_with_packing_equals_without(setup):
    cfg, rows, pad = setup
    model = lora_model(cfg)
    plain = evaluate_loss(model, rows, CausalLMObjective(), 8, pad, torch.device("cpu"))
    packed = evaluate_loss(model, rows, CausalLMObjective(), 8, pad, torch.device("cpu"), pack_to=512)
    assert packed.loss == pytest.approx(plain.loss, rel=1e-5) and packed.tokens == plain.tokens


def test_chunked_cross_entropy_equals_the_plain_projection(setup):
    cfg, rows, pad = setup
    model = lora_model(cfg)
    batch = collate(rows[:8], pad)
    plain = loss_and_grads(model, batch, CausalLMObjective(chunk=None))
    chunked = loss_and_grads(model, batch, CausalLMObjective(chunk=5))  # many chunks, a ragged last one
    assert chunked[0] == pytest.approx(plain[0], rel=1e-5) and chunked[1:3] == plain[1:3]
    assert_close_grads(chunked[3], plain[3])


def test_chunked_cross_entropy_trains_the_projection_too():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    loss, correct = linear_cross_entropy(hidden, weight, targets, chunk=8)
    (0.5 * loss).backward()
    got_h, got_w = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    logits = hidden @ weight.T
    (0.5 * F.cross_entropy(logits, targets, reduction="sum")).backward()
    expected = float(F.cross_entropy(logits, targets, reduction="sum").detach())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    assert correct == int((logits.argmax(-1) == targets).sum())
    assert torch.allclose(got_h, hidden.grad, atol=1e-5) and torch.allclose(got_w, weight.grad, atol=1e-5)


def test_length_grouping_keeps_each_row_once_and_pads_less(setup):
    _, rows, _ = setup
    lengths = [len(r.input_ids) for r in rows] * 8  # 192 rows
    grouped = build_order([len(lengths)], [None], seed=5, lengths=lengths, batch_size=8)(0)
    plain = epoch_order(len(lengths), 5, 0)
    assert sorted(grouped) == list(range(len(lengths)))

    def padded(order):
        return sum(8 * max(lengths[i] for i in order[j : j + 8]) for j in range(0, len(order), 8))

    assert padded(grouped) < padded(plain)
    assert grouped != build_order([len(lengths)], [None], seed=5, lengths=lengths, batch_size=8)(1)


@pytest.mark.parametrize(
    "option",
    ["activation_checkpointing", pytest.param("compile", marks=pytest.mark.slow)],  # compiling takes minutes on a CPU
)
def test_model_speed_options_leave_loss_and_gradients_unchanged(setup, option):
    cfg, rows, pad = setup
    batch = collate(rows[:8], pad)
    reference = loss_and_grads(lora_model(cfg), batch)
    model = lora_model(cfg)
    apply_speed_options(model, cfg.train.model_copy(update={option: True}), packs=option == "packing")
    model.train()
    faster = loss_and_grads(model, batch)
    assert faster[0] == pytest.approx(reference[0], rel=1e-5)
    assert_close_grads(faster[3], reference[3], rtol=1e-4)


def test_verify_command_passes_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    import yaml

    from tunesmith.cli import main

    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_model_dir, data, tmp_path / "run")), encoding="utf-8")
    code = main(
        ["verify", str(config), "--steps", "2", "--options", "packing", "chunked_ce", "activation_checkpointing"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "packing" in out and "chunked_ce" in out and "DIVERGES" not in out
    assert not (tmp_path / "run").exists()


def test_verify_counts_any_nan_as_a_failure():
    """max() passes over a nan and a nan compares false with everything: a nan in any loss or gradient, of a
    variant or of the reference, must fail verify instead of reading as agreement."""
    from tunesmith.recipes.verify import Variant, VerifyReport, compare, verdict_line

    nan, inf = float("nan"), float("inf")

    def variant(name: str, losses: list[float], grad: list[float]) -> Variant:
        return Variant(name, losses, {"w": torch.tensor(grad)}, 0.0, tolerance=2e-4)

    reference = variant("reference (all off)", [2.0, 1.5], [1.0, 2.0])
    same = variant("packing", [2.0, 1.5], [1.0, 2.0])
    compare(same, reference)
    assert same.ok and same.loss_diff == 0 and same.grad_diff == 0
    for broken in (
        variant("chunked_ce", [2.0, nan], [1.0, 2.0]),  # nan second: max() over the differences kept the first
        variant("chunked_ce", [nan, 1.5], [1.0, 2.0]),
        variant("chunked_ce", [2.0, inf], [1.0, 2.0]),
        variant("chunked_ce", [2.0, 1.5], [1.0, nan]),
    ):
        compare(broken, reference)
        assert not broken.ok and broken.loss_diff == inf
    diverged = variant("reference (all off)", [2.0, nan], [1.0, 2.0])
    again = variant("packing", [2.0, nan], [1.0, 2.0])
    compare(again, diverged)
    report = VerifyReport(2, "cpu, torch.float32", [diverged, again])
    assert not again.ok and not report.ok and not report.finite
    assert "nan or infinite loss or gradients in: reference (all off), packing" in verdict_line(report)


def test_verify_fails_a_config_that_diverges(tiny_model_dir, tmp_path, capsys):
    """lr=1e30 makes every variant's second loss nan; before, all agreed because every difference was nan."""
    import yaml

    from tunesmith.cli import main

    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_model_dir, data, tmp_path / "run")), encoding="utf-8")
    code = main(["verify", str(config), "train.lr=1e30", "--steps", "2", "--options", "packing"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1, out
    assert "agree" not in out  # the table may cut its verdict column; the closing line is whole
    assert "nan or infinite loss or gradients in: reference (all off), packing" in out


def test_packed_rows_get_no_dense_mask_under_segment_attention(setup):
    """transformers builds a block-diagonal (T x T) mask from packed positions for SDPA; switched to row-by-row
    attention the model is given none, so no cross-row score is computed."""
    cfg, rows, pad = setup
    model = lora_model(cfg)
    inner = model.get_base_model()
    batch = pack(rows[:4], pad, capacity=2048)
    embeds = inner.get_input_embeddings()(batch.input_ids)
    args = dict(inputs_embeds=embeds, attention_mask=None, position_ids=batch.position_ids)
    args["cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"] = None
    assert create_causal_mask(config=inner.config, **args) is not None  # sdpa: the dense block mask
    assert use_segment_attention(model)
    assert create_causal_mask(config=inner.config, **args) is None


def test_segment_attention_generates_exactly_as_sdpa(setup):
    """The switched model still scores and generates padded batches through SDPA with its usual mask."""
    cfg, rows, pad = setup
    model = lora_model(cfg).eval()
    ids = torch.tensor([[pad, pad, *rows[0].input_ids[:6]], rows[1].input_ids[:8]])
    mask = (torch.arange(8) >= torch.tensor([[2], [0]])).long()
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=pad)
    plain = model.generate(**kwargs)
    assert use_segment_attention(model)
    assert torch.equal(model.generate(**kwargs), plain)


# --- precision --------------------------------------------------------------------------------------------------


def test_auto_precision_autocasts_to_bf16_only_where_the_cpu_has_it_and_it_measured_faster(monkeypatch):
    """Emulated bf16 matmuls run several times slower than fp32, and native AVX512-BF16 without AMX measured slower
    too (0.58x here), so `auto` needs both the instruction and a measured speed-up; `bf16-mixed` and `float32` are
    the user's choice on any machine."""
    from tunesmith.models import cpu_speed

    cpu = torch.device("cpu")
    measured = []
    monkeypatch.setattr(cpu_speed, "bf16_speedup", lambda threads=None: measured.append(1) or speedup)
    caps = {**torch.cpu.get_capabilities(), "avx512_bf16": False, "amx_bf16": False}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    speedup = 3.0
    assert training_precision("auto", cpu) == (torch.float32, None) and not measured  # no instruction: not measured
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {**caps, "avx512_bf16": True})
    assert training_precision("auto", cpu) == (torch.float32, torch.bfloat16)  # native and faster
    speedup = 0.58
    assert training_precision("auto", cpu) == (torch.float32, None)  # native but slower
    speedup = 1.2
    assert training_precision("auto", cpu) == (torch.float32, None)  # within the margin: not worth the rounding
    assert training_precision("bf16-mixed", cpu) == (torch.float32, torch.bfloat16)  # asked for
    assert training_precision("float32", cpu) == (torch.float32, None)  # pinned fp32 on any machine


def test_the_bf16_speed_of_a_cpu_is_measured_once_per_thread_count_and_remembered(monkeypatch, tmp_path):
    """The measurement is cached per CPU, torch version and thread count, so every run on one machine makes the same
    choice; an unreadable cache file is measured again and rewritten, never an error."""
    from tunesmith.models import cpu_speed

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    real = cpu_speed.measure_bf16_speedup
    results = [1.5, 0.6, 2.0]
    monkeypatch.setattr(cpu_speed, "measure_bf16_speedup", lambda: results.pop(0))
    assert cpu_speed.bf16_speedup(2) == 1.5 and cpu_speed.bf16_speedup(2) == 1.5 and len(results) == 2
    assert not cpu_speed.bf16_pays_off(1) and len(results) == 1  # another thread count is another measurement
    assert cpu_speed.bf16_pays_off(2)
    (tmp_path / "cpu-precision.json").write_text("{not json")
    assert cpu_speed.bf16_speedup(2) == 2.0 and not results
    saved = json.loads((tmp_path / "cpu-precision.json").read_text())
    assert list(saved.values()) == [{"speedup": 2.0}] and next(iter(saved)).endswith("threads 2")
    assert 0.05 < real() < 50  # the real measurement: fp32 time over bf16 time, a fraction of a second


@needs_bf16_cpu
def test_mixed_precision_on_a_bf16_cpu_trains_like_fp32(tiny_model_dir, tmp_path):
    """`bf16-mixed` (what `auto` picks where bf16 measured faster) autocasts to bf16 (the trained weights are not
    bit-identical to fp32), keeps fp32 weights, records the choice in the manifest, and tracks the fp32 run step by
    step."""
    import json

    from safetensors.torch import load_file

    from tunesmith.recipes.train import run_training
    from tunesmith.training.checkpoint import list_checkpoints

    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    losses, weights = {}, {}
    for dtype in ("bf16-mixed", "float32"):
        out = run_training(build_config(tiny_config(tiny_model_dir, data, tmp_path / dtype, dtype=dtype)), log=print)
        lines = [json.loads(x) for x in (out.run_dir / "metrics.jsonl").read_text().splitlines()]
        losses[dtype] = torch.tensor([x["loss"] for x in lines if "lr" in x])
        weights[dtype] = load_file(list_checkpoints(out.run_dir / "checkpoints")[-1] / "trainable.safetensors")
        precision = json.loads((out.run_dir / "manifest.json").read_text())["precision"]
        assert precision["autocast"] == ("torch.bfloat16" if dtype == "bf16-mixed" else None)
    assert all(w.dtype == torch.float32 for w in weights["bf16-mixed"].values())
    assert any(not torch.equal(w, weights["float32"][name]) for name, w in weights["bf16-mixed"].items())
    torch.testing.assert_close(losses["bf16-mixed"], losses["float32"], rtol=1e-3, atol=0)  # measured: 3e-5


@needs_bf16_cpu
def test_verify_checks_mixed_precision_against_fp32_when_the_run_would_use_it(tiny_model_dir, tmp_path):
    """Under mixed precision (`bf16-mixed`, or `auto` where bf16 pays off) the reference is fp32, so packing is held
    to the fp32 tolerance, and mixed_precision is its own variant held to the bf16 one; a config pinned to fp32 is
    not offered it."""
    from tunesmith.recipes.verify import verify

    data = write_chat_data(tmp_path / "train.jsonl", n=24)
    cfg = build_config(tiny_config(tiny_model_dir, data, tmp_path / "run", dtype="bf16-mixed"))
    report = verify(cfg, steps=2, options=("packing", "mixed_precision"), log=lambda *_: None)
    reference, packing, mixed = report.variants
    assert reference.name == "reference (all off)" and reference.tolerance == 2e-4
    assert report.ok and report.precision == "cpu, torch.float32"
    assert (packing.tolerance, mixed.tolerance) == (2e-4, 3e-2)
    assert 0 < mixed.loss_diff < 1e-3 and packing.loss_diff < 1e-5  # bf16 autocast really ran; packing is exact

"""Data-parallel training gives the numbers of one process: two gloo ranks on the CPU, started by torchrun, against
an in-process run with the same global batch (training/distributed.py). LoRA through DDP and full fine-tuning
through FSDP2, packed and padded, a short last step that leaves one rank without examples, a rank killed mid-run and
resumed (on the same and on another number of ranks), and the world sizes that cannot split a step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_runs import tiny_config, write_chat_data

from tunesmith.config import build_config
from tunesmith.faults import ENV, RANK_ENV
from tunesmith.recipes.train import run_training
from tunesmith.training.checkpoint import list_checkpoints
from tunesmith.training.distributed import DistributedError, World, check_split, share

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def quiet(*_: object) -> None:
    pass


def torchrun(
    config: Path,
    ranks: int = 2,
    *args: str,
    fault: str | None = None,
    rank: int | None = None,
    own: bool = False,
    scratch: Path | None = None,
):
    """`tunesmith train CONFIG` on `ranks` processes: through torchrun, or (`own`) through `tunesmith train --ranks`;
    `scratch`: the processes' temporary directory (TMPDIR)."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV, RANK_ENV)}
    env |= {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if scratch is not None:
        scratch.mkdir(exist_ok=True)
        env["TMPDIR"] = str(scratch)
    if fault is not None:
        env[ENV] = fault
        env[RANK_ENV] = str(rank)
    if own:
        command = [sys.executable, "-m", "tunesmith.cli", "train", str(config), *args, "--ranks", str(ranks)]
    else:
        command = [*TORCHRUN, "--nproc-per-node", str(ranks), "-m", "tunesmith.cli", "train", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def write_config(tmp_path: Path, name: str, settings: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def step_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if "lr" in r]


def weights(run: Path) -> dict[str, torch.Tensor]:
    final = run / "final"
    name = "adapter_model.safetensors" if (final / "adapter_model.safetensors").is_file() else "model.safetensors"
    return load_file(final / name)


def assert_same_run(one: Path, many: Path, atol: float = 1e-5, weights_atol: float = 1e-4) -> None:
    """Same per-step losses and gradient norms (to `atol`) and final weights. Weights get a wider tolerance: the
    ranks' gradients are summed in another order than one process accumulates them, and Adam's division by the
    root of the second moment turns last-bit differences of small gradients into differences near 1e-5."""
    a, b = step_records(one), step_records(many)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["trained_tokens"] == y["trained_tokens"] and x["tokens"] == y["tokens"]
        assert x["loss"] == pytest.approx(y["loss"], abs=atol, rel=atol)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], abs=atol, rel=atol)
    wa, wb = weights(one), weights(many)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=weights_atol, rtol=weights_atol, msg=name)


@pytest.fixture
def data(tmp_path) -> Path:
    return write_chat_data(tmp_path / "chat.jsonl")


CASES = {
    "lora-ddp-packed": {},
    "lora-ddp-padded": {"packing": False},
    "full-fsdp-packed": {"method": "full", "distributed": "fsdp"},
    "full-fsdp-padded": {"method": "full", "distributed": "fsdp", "packing": False},
}


@pytest.mark.parametrize("case", CASES)
def test_two_ranks_equal_one_process(tiny_model_dir, data, tmp_path, case):
    settings = tiny_config(tiny_model_dir, data, tmp_path / "one", eval_every=3, **CASES[case])
    run_training(build_config(settings), log=quiet)
    settings["output"]["dir"] = str(tmp_path / "two")
    done = torchrun(write_config(tmp_path, "two", settings))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(tmp_path / "one", tmp_path / "two")
    # One writer: one metrics line per step and evaluation, one progress bar, the run's record of its ranks.
    evals = [r for r in map(json.loads, (tmp_path / "two" / "metrics.jsonl").open()) if r.get("split") == "eval"]
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert done.stderr.count("train:   0%") == 1 and done.stdout.count("run directory:") == 1
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text(encoding="utf-8"))
    mode = CASES[case].get("distributed", "ddp")
    assert manifest["distributed"] == {"ranks": 2, "mode": mode}
    assert f"data-parallel on 2 ranks ({mode}" in (tmp_path / "two" / "MODEL_CARD.md").read_text(encoding="utf-8")
    checkpoint = list_checkpoints(tmp_path / "two" / "checkpoints")[-1]
    assert (checkpoint / "state" / ".metadata").is_file() and (checkpoint / "rng-1.pt").is_file()


def test_a_rank_left_without_examples_still_matches(tiny_model_dir, tmp_path):
    """41 training rows in steps of 8: the last step has one example, so rank 1 runs a filler micro-batch whose
    loss counts for nothing."""
    data = write_chat_data(tmp_path / "chat.jsonl", n=43)
    settings = tiny_config(tiny_model_dir, data, tmp_path / "one", max_steps=None, epochs=1, method="full")
    settings["train"] |= {"distributed": "fsdp"}
    result = run_training(build_config(settings), log=quiet)
    assert result.params["train_rows"] % 8 == 1  # the case under test
    settings["output"]["dir"] = str(tmp_path / "two")
    done = torchrun(write_config(tmp_path, "two", settings))
    assert done.returncode == 0, done.stderr[-3000:]
    assert step_records(tmp_path / "two")[-1]["trained_tokens"] < step_records(tmp_path / "two")[0]["trained_tokens"]
    assert_same_run(tmp_path / "one", tmp_path / "two")


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_a_killed_rank_resumes_to_the_uninterrupted_weights(tiny_model_dir, data, tmp_path, mode):
    """Rank 1 is killed (SIGKILL) while writing the step-4 checkpoint; torchrun stops rank 0; --resume on two ranks
    continues from step-2 and ends with the weights of a run that was never stopped. Resumed on one process, the
    sharded checkpoint is read too (reshared by torch.distributed.checkpoint), to the same weights."""
    method = {"method": "full"} if mode == "fsdp" else {}
    settings = tiny_config(tiny_model_dir, data, tmp_path / "whole", save_every=2, distributed=mode, **method)
    run_training(build_config(settings), log=quiet)

    settings["output"]["dir"] = str(tmp_path / "killed")
    config = write_config(tmp_path, "killed", settings)
    own = mode == "ddp"  # once through `tunesmith train --ranks 2`, once through torchrun
    scratch = tmp_path / "scratch"
    stopped = torchrun(config, fault="checkpoint:weights#2", rank=1, own=own, scratch=scratch)
    assert stopped.returncode != 0
    if own:  # the launcher's report is one line that names the rank and how to go on; no traceback
        assert (
            "error: rank 1 of 2 stopped (signal SIGKILL)" in stopped.stderr and "--ranks 2 --resume" in stopped.stderr
        )
        assert "Traceback" not in stopped.stderr and "ChildFailedError" not in stopped.stderr
        assert list(scratch.iterdir()) == []  # the launcher's error files went with it
    assert [p.name for p in list_checkpoints(tmp_path / "killed" / "checkpoints")] == ["step-2"]
    assert not (tmp_path / "killed" / "final").exists()
    resumed = torchrun(config, 2, "--resume", own=own)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert_same_run(tmp_path / "whole", tmp_path / "killed")

    # The same stop, resumed by one process: DCP reads the two ranks' shares into one model.
    settings["output"]["dir"] = str(tmp_path / "one")
    config = write_config(tmp_path, "one", settings)
    assert torchrun(config, fault="checkpoint:weights#2", rank=1).returncode != 0
    run_training(build_config(settings), resume=True, log=quiet)
    assert_same_run(tmp_path / "whole", tmp_path / "one")


def test_a_world_size_that_cannot_split_the_batch_is_refused(tiny_model_dir, data, tmp_path):
    check_split(8, 4, 2)
    with pytest.raises(DistributedError, match=r"multiple of 12.*run on 2 ranks"):
        check_split(8, 4, 3)
    settings = tiny_config(tiny_model_dir, data, tmp_path / "three")
    done = torchrun(write_config(tmp_path, "three", settings), 3)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot be split evenly over 3 ranks" in errors[0]  # rank 0 alone says it
    assert not (tmp_path / "three").exists()  # refused before anything was written


def test_shares_are_contiguous_and_cover_the_step():
    step = list(range(10))
    parts = [share(step, World(rank=r, size=4, local_size=4)) for r in range(4)]
    assert parts == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert share([7], World(rank=1, size=2, local_size=2)) == []


def test_fsdp_is_for_full_fine_tuning(tiny_model_dir, data, tmp_path):
    with pytest.raises(ValueError, match=r"train\.distributed=fsdp shards full fine-tuning"):
        build_config(tiny_config(tiny_model_dir, data, tmp_path / "x", distributed="fsdp"))


def test_the_jobs_server_trains_a_job_on_two_ranks(tiny_model_dir, tmp_path):
    """`tunesmith serve --train-ranks 2`: a job's trainer is started by torchrun, each step split over two
    processes; an auto batch is a multiple of the ranks, and a batch that is not is refused with the reason."""
    pytest.importorskip("openai")
    from served import Server

    server = Server(tmp_path / "runs", tiny_model_dir, options=("--train-ranks", "2"))
    server.start()
    try:
        data = write_chat_data(tmp_path / "arith.jsonl", n=24)
        with open(data, "rb") as fh:
            uploaded = server.client.files.create(file=fh, purpose="fine-tune")
        fast = ["eval.general=false", "eval.samples=0", "data.max_length=128", "data.replay.fraction=0"]
        overrides = {"overrides": [*fast, "train.max_steps=2"]}
        job = server.client.fine_tuning.jobs.create(
            model="tiny-llama", training_file=uploaded.id, seed=3, extra_body=overrides
        )
        odd = server.client.fine_tuning.jobs.create(
            model="tiny-llama", training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 3}}},
        )  # fmt: skip
        deadline = time.time() + 240
        while time.time() < deadline:
            job = server.client.fine_tuning.jobs.retrieve(job.id)
            odd = server.client.fine_tuning.jobs.retrieve(odd.id)
            if job.status in ("succeeded", "failed") and odd.status == "failed":
                break
            time.sleep(0.5)
        assert job.status == "succeeded", job.error
        assert job.hyperparameters.batch_size % 2 == 0
        run = next(p for p in (tmp_path / "runs").iterdir() if (p / "manifest.json").is_file())
        manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["distributed"] == {"ranks": 2, "mode": "ddp"}
        assert odd.status == "failed" and "multiple of 2" in odd.error.message
    finally:
        server.stop()


def test_verify_runs_the_config_on_several_ranks_against_one_process(tiny_model_dir, data, tmp_path):
    settings = tiny_config(tiny_model_dir, data, tmp_path / "unused")
    config = write_config(tmp_path, "verify", settings)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "tunesmith.cli", "verify", str(config), "--ranks", "2", "--steps", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 ranks (ddp) vs one process, 2 steps" in done.stdout and ": same" in done.stdout
    assert not (tmp_path / "unused").exists()
    refused = subprocess.run([*command[:-4], "--ranks", "3"], capture_output=True, text=True, env=env, timeout=600)
    assert refused.returncode == 2 and "cannot be split evenly over 3 ranks" in refused.stderr


def test_a_one_process_checkpoint_resumes_on_ddp_ranks_and_fsdp_says_it_cannot(tiny_model_dir, data, tmp_path):
    """A checkpoint of one process holds whole tensors keyed by position in the optimizer: DDP ranks read it as one
    process does; FSDP's shards cannot, and the run says so (and how to resume) before any step."""
    settings = tiny_config(tiny_model_dir, data, tmp_path / "whole", save_every=2)
    run_training(build_config(settings), log=quiet)
    for name, mode, method in (("ddp", "ddp", "lora"), ("fsdp", "fsdp", "full")):
        settings = tiny_config(tiny_model_dir, data, tmp_path / name, save_every=2, distributed=mode, method=method)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_training(build_config(settings), log=quiet, crash_after_step=3)
        done = torchrun(write_config(tmp_path, name, settings), 2, "--resume")
        if mode == "ddp":
            assert done.returncode == 0, done.stderr[-3000:]
            assert_same_run(tmp_path / "whole", tmp_path / name)
        else:
            assert done.returncode != 0  # torchrun exits 1 whatever its ranks returned
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert (
                len(errors) == 1
                and "was written by one process" in errors[0]
                and "resume it with one process" in errors[0]
            )


def test_accelerate_launch_runs_the_same_data_parallel_training(tiny_model_dir, data, tmp_path):
    """`accelerate launch --multi_gpu` sets the same rank variables torchrun does (here on CPU processes, gloo)."""
    pytest.importorskip("accelerate")
    settings = tiny_config(tiny_model_dir, data, tmp_path / "one")
    run_training(build_config(settings), log=quiet)
    settings["output"]["dir"] = str(tmp_path / "two")
    config = write_config(tmp_path, "two", settings)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [*launch, "-m", "tunesmith.cli", "train", str(config)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "manifest.json").read_text(encoding="utf-8"))["distributed"]["ranks"] == 2
    assert_same_run(tmp_path / "one", tmp_path / "two")

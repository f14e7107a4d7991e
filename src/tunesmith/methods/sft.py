"""Supervised fine-tuning (`method: {type: sft}`, the default): the causal LM learns to generate the answers.

Rows are rendered with the chat template, the loss is next-token cross-entropy on the answer's tokens only
(training/objectives.py), and micro-batches are packed when train.packing is on. The base and the tuned model are
evaluated alike on the held-out rows: loss and perplexity (per eval dataset too), side-by-side answers, the task
metrics with every baseline of the base (eval/baselines.py), and forgetting on general probes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tunesmith.config import SPEED_OPTIONS, Config, TrainConfig
from tunesmith.data.templates import Encoded, Renderer
from tunesmith.eval.baselines import baseline_line, score_baselines, tuned_comparison
from tunesmith.eval.general import forgetting, general_ability
from tunesmith.eval.runner import evaluate_loss, generate_answers
from tunesmith.eval.scoring import score_task
from tunesmith.eval.tasks import task_result
from tunesmith.faults import fault
from tunesmith.methods.base import EvalContext
from tunesmith.models.loading import LoadedBase, save_weights
from tunesmith.models.registry import is_run_dir
from tunesmith.rundir import RunDir
from tunesmith.training.chunked_ce import CE_CHUNK
from tunesmith.training.objectives import Batch, CausalLMObjective, make_batch


class SFT:
    generative = True
    peft_task_type = "CAUSAL_LM"
    speed_options = SPEED_OPTIONS
    trains_every_row = False  # a row whose answer is cut off by data.max_length trains no token: the audit says so

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def encoder(self, renderer: Renderer) -> Renderer:
        return renderer

    def packs(self, train: TrainConfig) -> bool:
        return train.packing

    def make_batch(self, rows: list[Encoded], pad_id: int, pack_to: int | None = None) -> Batch:
        return make_batch(rows, pad_id, pack_to)

    def attach(self, prepared, base: LoadedBase, device: torch.device, autocast, log) -> None:
        """Nothing to read before training: the rows are complete."""

    def build_model(self, base: LoadedBase, out: RunDir | None, device: torch.device, dtype: torch.dtype) -> nn.Module:
        """The base causal LM itself. Continuing from a finished run with LoRA: its adapter was merged into the
        weights in memory, and the new adapter must point at weights on disk, so they are written to out/base."""
        model = base.model
        if out is not None and is_run_dir(base.resolved.path) and self.cfg.adapter.method == "lora":
            model.save_pretrained(out.base)
            base.tokenizer.save_pretrained(out.base)
            model.name_or_path = str(out.base.resolve())
            model.config._name_or_path = model.name_or_path
        return model

    def objective(
        self, train: list[Encoded], log: Callable[[str], object], chunk: int | None = CE_CHUNK
    ) -> CausalLMObjective:
        return CausalLMObjective(chunk, kl=self.cfg.data.replay.kl)

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict:
        """Loss, perplexity and token accuracy on the held-out rows; with several eval datasets each one's too."""
        fault("eval")
        rows, objective, batch = ctx.prepared.eval, CausalLMObjective(), ctx.cfg.eval.batch_size
        pack_to = ctx.cfg.data.max_length if self.packs(ctx.cfg.train) else None
        own = ctx.prepared.own_eval()  # rows carried forward from a parent run count in `datasets` only
        metrics = evaluate_loss(model, own, objective, batch, ctx.pad_id, ctx.device, pack_to).as_dict()
        if len({row.dataset for row in rows}) > 1:  # several eval sets: each one's own numbers too
            metrics["datasets"] = {
                name: evaluate_loss(
                    model, [r for r in rows if r.dataset == i], objective, batch, ctx.pad_id, ctx.device, pack_to
                ).as_dict()
                for i, name in enumerate(ctx.prepared.eval_names)
                if any(r.dataset == i for r in rows)
            }
        return metrics

    def base_eval(self, model: nn.Module, base_lm: nn.Module, ctx: EvalContext) -> dict:
        cfg, prepared = ctx.cfg, ctx.prepared
        metrics = self.evaluate(model, ctx)
        result = {"model": cfg.model.base, "metrics": metrics, "samples": samples(model, ctx)}
        if cfg.task.type != "none":
            result["task"] = score_task(model, ctx.renderer, prepared.eval_examples, cfg, ctx.device)
            result |= score_baselines(
                model,
                ctx.renderer,
                prepared.eval_examples,
                prepared.train_examples,
                cfg.task,
                task_result(result["task"]),
                cfg.eval.batch_size,
                ctx.device,
                cfg.train.seed,
                cfg.data.slice_field,
            )
            ctx.log(baseline_line(result, cfg.task.type))
        if cfg.eval.general:
            result["general"] = self.general(model, ctx)
        ctx.log(f"base model: eval loss {metrics['loss']:.4f}, perplexity {metrics['perplexity']:.2f}")
        return result

    def tuned_eval(self, model: nn.Module, base_eval: dict, final: Path, ctx: EvalContext) -> dict:
        cfg = ctx.cfg
        result = {"model": str(final), "metrics": self.evaluate(model, ctx), "samples": samples(model, ctx)}
        if cfg.task.type != "none":
            result["task"] = score_task(model, ctx.renderer, ctx.prepared.eval_examples, cfg, ctx.device)
            result |= tuned_comparison(base_eval, result["task"], cfg.task, cfg.train.seed)
        if cfg.eval.general and "general" in base_eval:
            result["general"] = self.general(model, ctx)
            result["forgetting"] = forgetting(base_eval["general"], result["general"], cfg.train.seed)
        return result

    def general(self, model: nn.Module, ctx: EvalContext) -> dict:
        """The forgetting probes (eval/general.py) on `model` as it is now."""
        cfg = ctx.cfg
        probe_data = Path(cfg.eval.probe_data) if cfg.eval.probe_data else None
        return general_ability(model, ctx.renderer, cfg.eval.batch_size, ctx.device, probe_data).as_dict()

    def write_final(
        self,
        model: nn.Module,
        tokenizer,
        folder: Path,
        stop_ids: list[int],
        initial: Path | None = None,
        state: dict | None = None,
    ) -> None:
        """The weights (or the adapter) and tokenizer; generation stops at every stop token of the template."""
        model.generation_config.eos_token_id = stop_ids
        save_weights(model, folder, initial, state)
        tokenizer.save_pretrained(folder)
        if self.cfg.adapter.method == "lora":
            model.get_base_model().generation_config.save_pretrained(folder)


def samples(model: nn.Module, ctx: EvalContext) -> list[dict]:
    """Greedy answers to the first held-out prompts: what a user of the model would ask, answered."""
    renderer, cfg = ctx.renderer, ctx.cfg
    prompts, references = [], []
    for ex, spec in ctx.prepared.eval_examples[: cfg.eval.samples]:
        prompt, reference = renderer.first_turn(ex, spec.system)
        prompts.append(prompt)
        references.append(reference)
    answers = generate_answers(
        model,
        renderer.tokenizer,
        [renderer.prompt_ids(p) for p in prompts],
        cfg.eval.max_new_tokens,
        ctx.device,
        renderer.stop_ids(),
    )
    return [
        {"prompt": p[-1]["content"], "reference": ref, "answer": ans}
        for p, ref, ans in zip(prompts, references, answers, strict=True)
    ]

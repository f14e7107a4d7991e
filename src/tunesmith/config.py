"""Typed, strict run configuration: defaults < YAML file < `key.sub=value` overrides.

    tunesmith train examples/gsm8k-lora.yaml train.max_steps=50 adapter.r=8

Every concern has its own nested model; unknown or ill-typed keys fail with the key's dotted name.
Dependent values (gradient accumulation) are derived here, in one place.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tunesmith.config_base import Strict
from tunesmith.config_methods import (  # noqa: F401 - the method sections are part of the config's interface
    GENERATIVE_PREFERENCE,
    METHOD_SECTIONS,
    METHOD_TYPES,
    PREFERENCE_TYPES,
    ClassifierMethod,
    DPOMethod,
    KTOMethod,
    MethodConfig,
    ORPOMethod,
    RewardModelMethod,
    SFTMethod,
    SimPOMethod,
)
from tunesmith.config_sweep import SweepConfig
from tunesmith.config_yaml import (
    ConfigError,
    apply_overrides,
    parse_yaml,
    read_config_text,
    yaml_problem,
)

# The speed options `tunesmith verify` checks against the plain computation (recipes/verify.py).
SPEED_OPTIONS = ("packing", "chunked_ce", "activation_checkpointing", "compile")


# torch.manual_seed takes seeds below 2**64, and training/order.py derives per-epoch and per-dataset seeds as
# (seed * 1_000_003 + dataset) * 7919 + cycle: seeds up to 2**31 - 1 keep every derived seed in range.
MAX_SEED = 2**31 - 1


class Kind(StrEnum):
    """Canonical record kinds (see ARCHITECTURE.md)."""

    auto = "auto"
    chat = "chat"
    instruction = "instruction"
    completion = "completion"
    text = "text"
    classification = "classification"  # text + label; audited now, trained by a classification objective
    preference = "preference"  # prompt + chosen + rejected; audited now, trained by a preference objective


class IdSelection(Strict):
    """Rows chosen by id from a file of ids: a JSON list, a JSON object (its keys), or one id per line."""

    file: str = Field(description="File holding the ids, e.g. an official test split's id list.")
    field: str = Field("id", description="Column holding each row's id (_key for a JSON object of records).")
    exclude: bool = Field(False, description="Keep every row except these ids, instead of only these.")


class DatasetSpec(Strict):
    name: str | None = Field(None, description="Name in reports and per-dataset metrics; default: the file's stem.")
    path: str = Field(description="File to read: .jsonl/.json/.csv/.tsv/.parquet/.txt, optionally .gz.")
    kind: Kind = Field(Kind.auto, description="Record kind; auto detects it from the (mapped) field names.")
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "txt"] = Field(
        "auto", description="File format; auto decides from the file name's extension."
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Source column -> canonical field, e.g. {question: prompt, answer: completion}.",
    )
    columns: list[str] | None = Field(None, description="Column names for a CSV/TSV file that has no header row.")
    json_key: str | None = Field(None, description="Dotted key of the list of rows inside a JSON document.")
    template: str | None = Field(
        None, description="Prompt template with {column} placeholders; its result becomes the prompt/instruction."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Maps raw target values to words, e.g. {'0': negative, '1': positive}."
    )
    system: str | None = Field(None, description="System message put before every chat rendered from this dataset.")
    limit: int | None = Field(None, ge=1, description="Use only the first N valid rows of the file.")
    ids: IdSelection | None = Field(None, description="Keep (or drop) only the rows whose id is listed in a file.")
    weight: float | None = Field(
        None,
        gt=0,
        description="Sampling proportion when several train datasets are mixed: each epoch draws weight / total of "
        "its rows from this dataset (cycling through it when that is more rows than it has). Unset: its size.",
    )

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        path = Path(self.path)
        stem = path.name.split(".")[0] or path.name
        return (
            stem
            if stem not in ("train", "dev", "test", "eval", "valid", "validation")
            else f"{path.parent.name}/{stem}"
        )

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_as_text(cls, value: Any) -> Any:
        # YAML reads `{0: negative}` with an int key; raw values are compared as text, so 0 and "0" are one label.
        if isinstance(value, dict):
            return {str(k).lower() if isinstance(k, bool) else str(k): v for k, v in value.items()}
        return value


class ModelConfig(Strict):
    base: str = Field(
        "smollm2-135m-instruct",
        description="Registry name, HF model directory, .gguf file, or a finished run directory (continue training).",
    )
    dtype: Literal["auto", "float32", "bf16-mixed", "bfloat16", "float16"] = Field(
        "auto",
        description="Training dtype; auto is mixed precision (fp32 weights, bf16 autocast) where bf16 is native and "
        "faster (GPUs with bf16; CPUs with AVX512-BF16 or AMX whose bf16 matmuls measured faster than fp32, once per "
        "machine) and float32 elsewhere; bf16-mixed asks for that mixed precision on any machine; float32 pins exact "
        "fp32 training; bfloat16 keeps the weights themselves in bf16; float16 is mixed precision with fp32 weights, "
        "fp16 autocast and dynamic loss scaling (for GPUs without bf16).",
    )
    trust_remote_code: bool = Field(False, description="Allow model code shipped with a checkpoint to run.")


DEFAULT_REPLAY = 0.2  # data.replay.fraction of causal-LM runs when unset
DEFAULT_REPLAY_KL = 1.0  # data.replay.kl when unset and there are replay rows


class ReplayConfig(Strict):
    fraction: float | None = Field(
        None,
        ge=0,
        lt=0.9,
        description="Share of each epoch's rows that are replay rows, which remind the model of what it knew; 0: "
        f"none. Unset: {DEFAULT_REPLAY} for causal-LM runs (measured: it keeps general questions and reading within "
        "noise of the base at 98% of the task gain; benchmarks/README.md, Forgetting), 0 for other methods.",
    )
    source: Literal["self", "parent", "both"] | None = Field(
        None,
        description="self: the base model's own answers to 120 bundled general prompts (no outside data; generated "
        "once per base and cached); parent: the training rows of the run model.base continues from; both. Unset: "
        "both when model.base is a finished causal-LM run (measured on two tasks in sequence: the first keeps all of "
        "its gain, against 87% with self; benchmarks/README.md, Forgetting), else self.",
    )
    max_new_tokens: int = Field(96, ge=8, le=512, description="Length of the base's answers for self replay.")
    kl: float | None = Field(
        None,
        ge=0,
        le=10,
        description="Weight of a KL-to-base penalty on the replay rows: their loss adds kl x KL(base || model) over "
        "the base's 20 most likely next tokens at each answer token (computed once, before training), so the model "
        f"keeps the base's whole distribution there, not only its first choice; 0: off. Unset: {DEFAULT_REPLAY_KL} "
        "when there are replay rows (measured: chat and arithmetic likelihood drift ~40% less than with replay alone, "
        "at the same task gain; benchmarks/README.md, Forgetting), else 0.",
    )


def _continues_causal_lm_run(base: str) -> bool:
    """Whether model.base is a finished causal-LM run (its final/ beside the config.yaml of an sft run), whose own
    training rows a continuation replays by default. The run folder's full reader (rundir.py) builds on this module."""
    folder = Path(base).expanduser()
    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    method = saved.get("method") if isinstance(saved, dict) else None
    kind = method.get("type", "sft") if isinstance(method, dict) else "sft"
    return (folder / "final").is_dir() and kind == "sft"


class DataConfig(Strict):
    train: list[DatasetSpec] = Field(default_factory=list, description="Training datasets.")
    eval: list[DatasetSpec] = Field(
        default_factory=list, description="Held-out datasets; when empty a deterministic split of train is used."
    )
    eval_fraction: float = Field(0.05, gt=0, lt=1, description="Share of train held out when data.eval is empty.")
    eval_max_rows: int = Field(256, ge=1, description="Rows evaluated per eval dataset (or held out of train).")
    validation_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Evaluate on a validation split of this share of the training rows instead of the test split "
        "(data.eval, or the share of train held out without it), which the run then never reads. Every sweep trial "
        "sets it, so the rows a search selects on are never the rows its winner is scored on.",
    )
    max_length: int = Field(1024, ge=8, description="Tokens per example; longer rows are truncated on the right.")
    prompt_format: Literal["auto", "chat", "plain"] = Field(
        "auto",
        description="How non-text rows become tokens: the tokenizer's chat template (chat), plain concatenation "
        "(plain), or chat whenever the tokenizer has a template (auto).",
    )
    skip_invalid: bool = Field(False, description="Skip bad rows (reported) instead of refusing to train.")
    split_by: str | None = Field(
        None,
        description="Source column whose rows stay together on one side of the held-out split (e.g. the paragraph "
        "of QA rows), so eval never asks about text seen in training. The split is also stratified by dataset and, "
        "for classification rows, by label.",
    )
    slice_field: str | None = Field(
        None,
        description="Source column whose values are slices: the audit's label share per slice, and every task "
        "metric per slice with the largest gap between slices (bias check).",
    )
    replay: ReplayConfig = Field(
        default_factory=ReplayConfig, description="Replay rows mixed into training against forgetting."
    )

    @model_validator(mode="after")
    def _split_by_needs_split(self) -> DataConfig:
        if self.split_by is not None and self.eval:
            raise ValueError("data.split_by groups the held-out split of train; with data.eval given there is none")
        return self

    @model_validator(mode="after")
    def _distinct_names(self) -> DataConfig:
        for split in ("train", "eval"):
            names = [spec.display_name for spec in getattr(self, split)]
            dups = sorted({n for n in names if names.count(n) > 1})
            if dups:
                raise ValueError(f"data.{split}: two datasets are both named {dups[0]!r}; give each a distinct name")
        return self


class AdapterConfig(Strict):
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters (peft) or full fine-tuning.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the LoRA input (on CPU its random masks cost ~13% of a step)."
    )
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or all-linear for every linear layer but the output head."
    )
    dora: bool = Field(
        False,
        description="DoRA: learn each adapted weight's magnitude apart from its direction (peft use_dora); closer to "
        "full fine-tuning at low rank, about 1.5x slower per step.",
    )
    rslora: bool = Field(
        False, description="Rank-stabilised scaling alpha/sqrt(r), not alpha/r (peft use_rslora): high ranks learn."
    )
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default",
        description="How the LoRA factors start: default (A random, B zero), gaussian, pissa (the principal singular "
        "vectors of each weight) or olora (its QR factors). pissa and olora move that part out of the base weight, "
        "so the model starts exactly at the base; final/ is converted to a plain adapter on the unchanged base.",
    )
    lora_plus_ratio: float | None = Field(
        None,
        gt=0,
        description="LoRA+: the B factors learn at train.lr times this ratio (16 in the LoRA+ paper); null: the same "
        "rate as A.",
    )

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not value:
            raise ValueError("name at least one module to adapt (e.g. [q_proj, v_proj]), or use all-linear")
        return value


class TrainConfig(Strict):
    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps to run; overrides epochs.")
    batch_size: int = Field(8, ge=1, description="Examples per optimizer step (the global batch).")
    micro_batch_size: int = Field(4, ge=1, description="Examples per forward pass; accumulation is derived.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warmup.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming up linearly.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the global gradient norm; null disables.")
    max_loss_ratio: float | None = Field(
        3.0,
        gt=1,
        description="Stop as diverged when a held-out evaluation's loss (a per-token NLL) is above this multiple of "
        "the base model's and more than 1 nat above it: training that blew up without reaching inf or nan (a loss of "
        "17 against the base's 3.8 has lost the model). null: only non-finite numbers stop a run.",
    )
    save_every: int = Field(0, ge=0, description="Checkpoint every N optimizer steps (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="How many of the newest checkpoints to keep.")
    eval_every: int = Field(0, ge=0, description="Evaluate every N optimizer steps (0: only before and after).")
    log_every: int = Field(1, ge=1, description="Write a metrics line every N optimizer steps.")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="Experiment trackers that get what metrics.jsonl gets (each record, as it is written), the "
        "resolved config as parameters, and report.html and MODEL_CARD.md at the end: tensorboard (event files in "
        "RUN/tensorboard), mlflow (train.mlflow_uri). Needs the packages: pip install 'tunesmith[trackers]'.",
    )
    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI; unset: MLFLOW_TRACKING_URI when set, else a local database beside the run "
        "(RUNS/mlflow.db, artifacts in RUNS/mlflow-artifacts): nothing leaves the machine unless this names a server.",
    )
    seed: int = Field(
        42, ge=0, le=MAX_SEED, description=f"Seed for data order, initialisation and dropout (0 to {MAX_SEED})."
    )
    threads: int | None = Field(None, ge=1, description="CPU threads; default is the number of physical cores.")
    packing: bool = Field(
        True,
        description="Pack the rows of each micro-batch into as few sequences as fit data.max_length (best-fit "
        "decreasing), with positions restarting per row and a block-diagonal causal mask: no padding compute, the "
        "same loss. Causal-LM objectives only.",
    )
    group_by_length: bool = Field(
        False,
        description="Without packing: batch rows of similar length together (seeded, within windows of 64 batches) "
        "so that little is padded; batches are still visited in random order.",
    )
    activation_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: much less memory, ~30% more compute."
    )
    compile: bool = Field(
        False, description="torch.compile each decoder layer (regional compilation; the first steps pay compile time)."
    )
    distributed: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="How several processes started by torchrun share the training (one process ignores it): ddp, "
        "every rank holds the model and gradients are averaged (adapters, or a model that fits one device); fsdp, "
        "FSDP2 shards weights, gradients and optimizer state over the ranks (adapter.method: full only). Each step's "
        "examples are split over the ranks: train.batch_size must be a multiple of ranks x micro_batch_size.",
    )

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"train.batch_size ({self.batch_size}) must be a multiple of train.micro_batch_size "
                f"({self.micro_batch_size})"
            )
        return self

    @property
    def grad_accum(self) -> int:
        """Micro-batches per optimizer step, derived from the global and micro batch sizes."""
        return self.batch_size // self.micro_batch_size


class ForgettingBudget(Strict):
    max_drop: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Largest allowed drop of an accuracy or F1 probe family, absolute (0.05 = 5 points).",
    )
    max_nll_increase: float = Field(
        0.1,
        gt=0,
        description="Largest allowed increase of a likelihood family's mean NLL per token (0.1: perplexity x1.105).",
    )
    stop: bool = Field(
        False,
        description="Stop the run at the first evaluation over budget; final/ is then the checkpoint with the lowest "
        "held-out loss among those within budget (needs train.eval_every, with a checkpoint at every evaluation).",
    )


class EvalConfig(Strict):
    general: bool = Field(
        True,
        description="Measure forgetting, base vs tuned, per probe family with paired intervals: perplexity on bundled "
        "general text and 200 bundled general questions, plus chat, reading and arithmetic with eval.probe_data "
        "(causal-LM runs; about 1 minute per model on a CPU).",
    )
    probe_data: str | None = Field(
        None,
        description="Folder laid out as ../shared/data (hh_rlhf/helpful-base, xquad_en, gsm8k): adds the chat, "
        "reading and arithmetic forgetting probes (the last 32 rows of each file). Unset: the bundled probes only.",
    )
    forgetting_budget: ForgettingBudget | None = Field(
        None,
        description="How much general ability the run may lose, checked at every evaluation during training and at "
        "the end; exceeding it is said at once (and stops the run with `stop`).",
    )
    judge: str | None = Field(
        None,
        description="Preference methods: a finished reward-model run (method.type: reward_model, trained on other "
        "pairs than this run's) that scores the base's and the tuned model's greedy answers to held-out prompts; "
        "reported as the tuned model's win rate with a 95% interval.",
    )
    judge_rows: int = Field(64, ge=1, description="Held-out prompts answered by both models for eval.judge.")
    samples: int = Field(3, ge=0, description="Held-out prompts answered by base and tuned model, side by side.")
    max_new_tokens: int = Field(96, ge=1, description="Generation length for the side-by-side samples.")
    batch_size: int = Field(8, ge=1, description="Examples per forward pass during evaluation.")
    reuse_base: bool = Field(
        True,
        description="Read the base model's evaluation from the cache when an earlier run scored the same base on the "
        "same rows with the same settings and the same tunesmith code (only how it trains may differ: learning rate, "
        "steps, batch, adapter), and when `tunesmith eval` scored it so before; scoring the base with every baseline "
        "can take longer than training. false scores it again.",
    )


class TaskConfig(Strict):
    type: Literal["none", "classification", "summarization", "qa", "translation"] = Field(
        "none",
        description="The task the held-out answers are scored as, for base and tuned model alike (none: loss only).",
    )
    labels: list[str] = Field(default_factory=list, description="classification: the label words, in this order.")
    parse: Literal["auto", "text", "first_line", "label", "number"] = Field(
        "auto",
        description="How a prediction is read from generated text: auto is label for classification, first_line "
        "for qa and the whole text otherwise; number takes the last number (GSM8K '#### 42') and, for qa, scores it "
        "by value ($18.00 = 18, -7 != 7).",
    )
    max_rows: int = Field(200, ge=1, description="Held-out rows scored (the first N of the eval data).")
    max_new_tokens: int = Field(64, ge=1, description="Generation length for task predictions.")
    bootstrap_resamples: int = Field(1000, ge=100, description="Resamples for the base-vs-tuned confidence interval.")
    prompt_variants: list[str] = Field(
        default_factory=list,
        description="Paraphrased prompts the task is also scored under (base and tuned), reported as mean and spread. "
        "{prompt} is the row's own prompt text; {column} is a source column, as in a dataset template.",
    )
    baselines: list[Literal["likelihood_zero_shot", "likelihood_few_shot", "generation_few_shot"]] = Field(
        default_factory=lambda: ["likelihood_zero_shot", "likelihood_few_shot", "generation_few_shot"],
        description="Ways the base is scored beside zero-shot generation (always scored: the base's own answers); the "
        "strongest on the first headline metric is the baseline the tuned model is compared with. likelihood_*: the "
        "label word the base finds most probable after the prompt (classification only); *_few_shot: task.few_shot "
        "training rows as earlier turns of the chat. A trivial baseline (majority class, lead sentence, copied source, "
        "most common answer) is always shown beside them.",
    )
    few_shot: int = Field(
        4,
        ge=1,
        le=8,
        description="Training rows shown as examples in the few-shot baselines (balanced across labels for "
        "classification; fewer for a row whose prompt would pass (few_shot + 1) x data.max_length tokens or the "
        "model's context). At most 8: each one makes every scored prompt longer.",
    )

    @model_validator(mode="after")
    def _variants_need_a_task(self) -> TaskConfig:
        if self.prompt_variants and self.type == "none":
            raise ValueError("task.prompt_variants: set task.type; variants are scored by the task's metrics")
        return self


RENAMED = {
    "task.objective": "method.type (objective generate is now method.type: sft, head is method.type: classifier)",
    "task.loss": "method.loss, with method.type: classifier",
    "task.class_weights": "method.class_weights, with method.type: classifier",
    "task.focal_gamma": "method.focal_gamma, with method.type: classifier",
    "task.label_smoothing": "method.label_smoothing, with method.type: classifier",
}


class AuditConfig(Strict):
    enabled: bool = Field(True, description="Audit the data before training (audit.json in the run directory).")
    allow: list[Literal["leakage", "pii"]] = Field(
        default_factory=list,
        description="Audit findings that do not stop training: leakage (train rows also in eval), pii (personal data "
        "or secrets). Rows that would train nothing always stop it unless data.skip_invalid is set.",
    )
    near_duplicate_threshold: float = Field(
        0.85, gt=0, le=1, description="Estimated Jaccard similarity of word 5-gram shingles that counts as near-equal."
    )
    ngram: int = Field(
        13,
        ge=5,
        description="An eval row that shares this many words in a row with a training row counts as leakage (the "
        "n-gram overlap test of contamination studies; GPT-3 used 13). Finds copies with a word or two changed.",
    )


class OutputConfig(Strict):
    dir: str = Field("runs/run", description="Run directory; everything the run did is written here.")
    overwrite: bool = Field(False, description="Replace an existing run directory instead of refusing.")


class Config(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    method: MethodConfig = Field(default_factory=SFTMethod, description="The training method and its own settings.")
    audit: AuditConfig = Field(default_factory=AuditConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    sweep: SweepConfig = Field(
        default_factory=SweepConfig, description="What `tunesmith sweep` searches (config_sweep.py); runs ignore it."
    )

    @model_validator(mode="after")
    def _replay_for_causal_lm(self) -> Config:
        """Unset replay resolves to the measured default for causal-LM runs and to none otherwise, written into the
        resolved config."""
        replay = self.data.replay
        if replay.fraction and self.method.type != "sft":
            raise ValueError("data.replay mixes generated chat rows into training: causal-LM runs only (method: sft)")
        if replay.fraction is None:
            replay.__dict__["fraction"] = DEFAULT_REPLAY if self.method.type == "sft" else 0.0
        if replay.kl and not replay.fraction:
            raise ValueError("data.replay.kl weighs a penalty on the replay rows: set data.replay.fraction above 0")
        if replay.kl is None:
            replay.__dict__["kl"] = DEFAULT_REPLAY_KL if replay.fraction else 0.0
        if replay.source is None:
            continues = self.method.type == "sft" and _continues_causal_lm_run(self.model.base)
            replay.__dict__["source"] = "both" if continues else "self"
        return self

    @model_validator(mode="after")
    def _fsdp_shards_full_weights(self) -> Config:
        if self.train.distributed == "fsdp" and self.adapter.method != "full":
            raise ValueError(
                "train.distributed=fsdp shards full fine-tuning (adapter.method: full); an adapter's trainable weights "
                "are small and every rank can hold the frozen base: use train.distributed=ddp"
            )
        return self

    @model_validator(mode="after")
    def _budget_can_stop(self) -> Config:
        budget, train = self.eval.forgetting_budget, self.train
        if budget is None:
            return self
        if not self.eval.general:
            raise ValueError("eval.forgetting_budget needs eval.general: true (the probes it is checked on)")
        if budget.stop and (not train.eval_every or not train.save_every or train.eval_every % train.save_every):
            raise ValueError(
                "eval.forgetting_budget.stop keeps the best checkpoint within budget: set train.eval_every and a "
                "train.save_every that divides it, so that every evaluation has a checkpoint"
            )
        return self

    @model_validator(mode="after")
    def _labels_and_method_agree(self) -> Config:
        """The classes are given once (task.labels or method.labels) and both sections then hold them; settings that
        would do nothing are refused, not silently ignored."""
        task, method = self.task, self.method
        if isinstance(method, ClassifierMethod):
            if task.type != "classification":
                raise ValueError("method.type: classifier needs task.type: classification (and its labels)")
            if task.prompt_variants:
                raise ValueError("task.prompt_variants: a classification head reads no prompt; use method.type: sft")
            if method.labels and task.labels and method.labels != task.labels:
                raise ValueError(f"method.labels {method.labels} differ from task.labels {task.labels}; give them once")
            labels = method.labels or task.labels
            if len(set(labels)) != len(labels):
                raise ValueError(f"method.labels: a head needs distinct labels, got {labels}")
            # Set on the models' dicts: assignment would validate each section again, mid-way.
            task.__dict__["labels"] = method.__dict__["labels"] = list(labels)
        if self.eval.judge and method.type not in GENERATIVE_PREFERENCE:
            kinds = ", ".join(GENERATIVE_PREFERENCE)
            raise ValueError(f"eval.judge scores generated answers of a preference run: method.type {kinds}")
        if method.type in PREFERENCE_TYPES and task.type != "none":
            raise ValueError(
                f"method.type: {method.type} is scored on held-out pairs (preference accuracy, margins); "
                "leave task.type unset"
            )
        if task.type == "classification" and len(task.labels) < 2:
            raise ValueError("task.labels: classification needs at least two label words")
        return self

    def to_yaml(self) -> str:
        """The resolved config with every default explicit."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _describe(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        if loc[:1] == ["method"] and len(loc) > 1 and loc[1] in METHOD_TYPES:  # pydantic names the union's member
            del loc[1]
        key = ".".join(loc)
        msg = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and key in RENAMED:
            msg = f"renamed: use {RENAMED[key]}"
        given = item.get("input")
        if item["type"] == "method_type":
            given = given.get("type") if isinstance(given, dict) else given
            key, msg = "method.type", f"one of {', '.join(METHOD_TYPES)} (method is a section: {{type: sft}})"
        shown = isinstance(given, int | float | str) and len(repr(given)) < 60  # short enough to read in one line
        if shown and item["type"] not in ("extra_forbidden", "value_error"):
            msg += f" (got {given!r})"  # `Input should be a finite number (got inf)`
        lines.append(f"config key {key}: {msg}" if loc else f"config: {msg}")
    return "\n".join(lines)


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> Config:
    raw = apply_overrides(copy.deepcopy(raw), overrides or [])
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}:\n{_describe(err)}") from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML preset (or none), apply overrides, validate strictly. Relative data paths stay as written."""
    raw: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = parse_yaml(read_config_text(path))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}:{yaml_problem(err)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        raw = loaded or {}
    return build_config(raw, overrides, source)


def upgrade_saved(raw: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config.yaml as the current schema reads it: the keys older versions wrote under `task` for the
    training method (objective, loss, class_weights, focal_gamma, label_smoothing) move to `method:`, and a run saved
    before data.replay (or its kl) existed keeps none (the default would add it). Only saved
    runs are upgraded; a user's config with an old key gets an error naming the new one (RENAMED)."""
    data = raw.get("data")
    if isinstance(data, dict) and "replay" not in data:  # saved before replay existed: it had none
        raw = copy.deepcopy(raw)
        raw["data"]["replay"] = {"fraction": 0.0}
    replay = raw.get("data", {}).get("replay") if isinstance(raw.get("data"), dict) else None
    if isinstance(replay, dict) and "kl" not in replay:  # saved before data.replay.kl existed: no penalty
        raw = copy.deepcopy(raw)
        raw["data"]["replay"]["kl"] = 0.0
    task = raw.get("task")
    if not isinstance(task, dict) or "method" in raw:
        return raw
    raw = copy.deepcopy(raw)
    task = raw["task"]
    objective = task.pop("objective", "generate")
    moved = {key: task.pop(key) for key in ("loss", "class_weights", "focal_gamma", "label_smoothing") if key in task}
    if objective == "head":
        raw["method"] = {"type": "classifier", **moved}
    return raw


def load_saved_config(path: str | Path) -> Config:
    """A finished (or started) run's config.yaml, written by this or an older version of tunesmith."""
    path = Path(path)
    try:
        loaded = parse_yaml(read_config_text(path))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}:{yaml_problem(err)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
    return build_config(upgrade_saved(loaded), source=str(path))

"""The `sweep:` config section: what `tunesmith sweep` searches, what it optimises, and how it prunes.

    sweep:
      objective: task            # task | loss | task+forgetting (a Pareto search)
      space:                     # any config key; without `space` the LoRA-aware default space is searched
        train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
        adapter.r: {choices: [8, 16, 32]}
        adapter.alpha/r: {choices: [1, 2]}   # the adapter's scale: alpha / r (alpha / sqrt(r) with rsLoRA)

A search space is checked whole before any trial starts (recipes/sweep.py checks that every key is a config key
and every value one the config accepts).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Keys the search understands beyond the config's own: the adapter's scale, from which adapter.alpha follows for the
# rank tried with it (alpha / r, or alpha / sqrt(r) with rsLoRA: recipes/sweep_space.apply_params).
DERIVED_KEYS = ("adapter.alpha/r",)


class ParamSpec(BaseModel):
    """One searched key: a float or int range (log-uniform with `log`), or a list of choices."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"] | None = Field(
        None, description="float, int or categorical; inferred: categorical with choices, else float."
    )
    low: float | None = Field(None, description="Range start (float and int).")
    high: float | None = Field(None, description="Range end, included (float and int).")
    log: bool = Field(False, description="Sample the range log-uniformly (learning rates, ranks).")
    choices: list[Any] | None = Field(None, description="The values a categorical key takes.")

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        kind = self.type or ("categorical" if self.choices is not None else "float")
        self.__dict__["type"] = kind
        if kind == "categorical":
            if not self.choices:
                raise ValueError("choices: give at least one value to try")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices: a value is listed twice in {self.choices}")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical key takes choices, not low/high/log")
            return self
        if self.choices is not None:
            raise ValueError(f"a {kind} range takes low and high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"a {kind} range needs both low and high")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int range needs whole low and high (got {self.low}, {self.high})")
        return self

    def values_to_check(self) -> list[Any]:
        """Values whose acceptance by the config stands for the whole spec: every choice, or both ends."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.type == "int":
            return [int(self.low or 0), int(self.high or 0)]
        return [self.low, self.high]


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: Literal["auto", "task", "loss", "task+forgetting"] = Field(
        "auto",
        description="What trials are compared on, on the validation split: the task metric (task), the held-out "
        "loss (loss), or the task metric and forgetting together as a Pareto search (task+forgetting); auto is task "
        "when the config has a task, else loss.",
    )
    metric: str | None = Field(
        None, description="The task metric optimised (default: the task's first headline metric, e.g. accuracy)."
    )
    space: dict[str, ParamSpec] | None = Field(
        None,
        description="Config key -> range or choices. Unset: the default space (learning rate log-uniform around the "
        "LoRA prior, rank, alpha/r, dropout, warmup, steps, batch size, target modules and the adapter variants).",
    )
    pruner: Literal["median", "halving", "none"] = Field(
        "median",
        description="Stop trials whose held-out loss at an evaluation is worse than the median of earlier trials at "
        "the same step (median), or successive halving (halving); not used by a Pareto search.",
    )
    evaluations: int = Field(
        4, ge=1, le=100, description="Held-out evaluations per trial that the pruner judges (train.eval_every)."
    )
    validation_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Share of the training rows every trial is evaluated on (data.validation_fraction); the test "
        "split is scored once, by the winner.",
    )
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler: TPE (Bayesian) or random.")
    seed: int = Field(0, ge=0, description="The sampler's seed.")
    start_from_config: bool = Field(
        True,
        description="The first trial trains the config as written (its value of every searched key the space can "
        "hold; the sampler draws the others), so the search starts from the hand-written run and its winner "
        "validates at least as well.",
    )

    @model_validator(mode="after")
    def _space_not_empty(self) -> SweepConfig:
        if self.space is not None and not self.space:
            raise ValueError("space: the search space is empty; name at least one key, or drop `space` for the default")
        return self

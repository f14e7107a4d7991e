"""The `method:` section of the config: one settings model per training method, chosen by `type`
(config.py's Config holds it; each method's module is methods/<type>.py).

    method: {type: dpo, beta: 0.1}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from tunesmith.config_base import Strict


class SFTMethod(Strict):
    """Supervised fine-tuning of the causal LM: next-token cross-entropy on the answer's tokens (methods/sft.py)."""

    type: Literal["sft"] = Field("sft", description="sft: the model learns to generate the answers.")


class ClassifierMethod(Strict):
    """A classification head on the decoder's last token, trained on (text, label) rows (methods/classifier.py)."""

    type: Literal["classifier"] = Field(
        "classifier", description="classifier: a K-way head; the base is scored as a causal LM."
    )
    labels: list[str] = Field(
        default_factory=list, description="The classes, in this order (the head's outputs); default task.labels."
    )
    loss: Literal["ce", "focal"] = Field(
        "ce", description="Cross-entropy, or focal loss (down-weights rows already classified well)."
    )
    class_weights: Literal["none", "balanced"] = Field(
        "none",
        description="Per-class loss weights; balanced is n / (K * count_k) over the training labels (logged and "
        "written to eval/base.json).",
    )
    focal_gamma: float = Field(2.0, ge=0, description="loss focal: the focusing exponent (0 is cross-entropy).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Share of each target spread over all classes.")

    @model_validator(mode="after")
    def _gamma_for_focal(self) -> ClassifierMethod:
        if self.loss != "focal" and self.focal_gamma != 2.0:
            raise ValueError("method.focal_gamma applies to method.loss: focal only")
        return self


class DPOMethod(Strict):
    """Direct preference optimisation on (prompt, chosen, rejected) pairs against the frozen base as the reference
    (methods/preference.py)."""

    type: Literal["dpo"] = Field("dpo", description="dpo: the chosen answer made likelier than the rejected one.")
    loss: Literal["sigmoid", "ipo", "hinge"] = Field(
        "sigmoid",
        description="sigmoid: DPO's logistic loss; ipo: squared distance of the log-ratio margin (per token) from "
        "1 / (2 beta); hinge: max(0, 1 - beta x margin) (SLiC).",
    )
    beta: float = Field(0.1, gt=0, description="How far the policy may move from the reference (higher: less).")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="sigmoid only: the share of pairs assumed mislabelled (conservative DPO)."
    )

    @model_validator(mode="after")
    def _smoothing_for_sigmoid(self) -> DPOMethod:
        if self.label_smoothing and self.loss != "sigmoid":
            raise ValueError("method.label_smoothing applies to method.loss: sigmoid only")
        return self


class SimPOMethod(Strict):
    """SimPO: preference pairs without a reference model, on length-normalised log-probabilities with a target
    margin (methods/preference.py)."""

    type: Literal["simpo"] = Field("simpo", description="simpo: reference-free, length-normalised preference loss.")
    beta: float = Field(2.0, gt=0, description="Scale of the length-normalised log-probability margin.")
    gamma: float = Field(1.0, ge=0, description="Target margin the chosen answer should win by (in beta units).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="The share of pairs assumed mislabelled.")


class ORPOMethod(Strict):
    """ORPO: supervised loss on the chosen answer plus an odds-ratio preference term, no reference model
    (methods/preference.py)."""

    type: Literal["orpo"] = Field("orpo", description="orpo: SFT on chosen plus a weighted odds-ratio penalty.")
    beta: float = Field(0.1, gt=0, description="Weight of the odds-ratio term next to the chosen answer's NLL.")


class KTOMethod(Strict):
    """KTO: single answers marked desirable or undesirable (no pairs needed), against the frozen base as the
    reference (methods/preference.py)."""

    type: Literal["kto"] = Field("kto", description="kto: desirable answers likelier, undesirable ones unlikelier.")
    beta: float = Field(0.1, gt=0, description="How far the policy may move from the reference (higher: less).")
    desirable_weight: float = Field(
        1.0,
        gt=0,
        description="lambda_D, the weight of desirable answers' loss; with unbalanced data keep "
        "lambda_D x n_desirable / (lambda_U x n_undesirable) between 1 and 4/3.",
    )
    undesirable_weight: float = Field(1.0, gt=0, description="lambda_U, the weight of undesirable answers' loss.")
    label_field: str = Field(
        "label",
        description="The column marking each row desirable (true, 1, yes, good) or undesirable (false, 0, no, bad).",
    )


class RewardModelMethod(Strict):
    """A reward model: the base with a scalar head, trained on preference pairs to score the chosen answer above the
    rejected one (Bradley-Terry), for judging answers (methods/reward.py)."""

    type: Literal["reward_model"] = Field(
        "reward_model", description="reward_model: a scalar score per answer, trained on preference pairs."
    )
    center: float = Field(
        0.0,
        ge=0,
        description="Weight of (r_chosen + r_rejected)^2 in the loss, which keeps the scores centred on 0 (0: off).",
    )


PREFERENCE_TYPES = ("dpo", "simpo", "orpo", "kto", "reward_model")
GENERATIVE_PREFERENCE = ("dpo", "simpo", "orpo", "kto")  # the preference methods that train the causal LM


def _method_type(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("type", "sft")
    return getattr(value, "type", None)


# The training method: one section, chosen by `type`; each method's module is methods/<type>.py.
METHOD_SECTIONS = {
    "sft": SFTMethod,
    "classifier": ClassifierMethod,
    "dpo": DPOMethod,
    "simpo": SimPOMethod,
    "orpo": ORPOMethod,
    "kto": KTOMethod,
    "reward_model": RewardModelMethod,
}
MethodConfig = Annotated[
    Annotated[SFTMethod, Tag("sft")]
    | Annotated[ClassifierMethod, Tag("classifier")]
    | Annotated[DPOMethod, Tag("dpo")]
    | Annotated[SimPOMethod, Tag("simpo")]
    | Annotated[ORPOMethod, Tag("orpo")]
    | Annotated[KTOMethod, Tag("kto")]
    | Annotated[RewardModelMethod, Tag("reward_model")],
    Discriminator(_method_type, custom_error_type="method_type", custom_error_message="unknown method type"),
]

METHOD_TYPES = tuple(METHOD_SECTIONS)

# Keys older versions read, and where each one went; a config that still uses one is told the new name.

"""Training methods: each is one module behind the `Method` protocol (methods/base.py), chosen by the config's
`method:` section (a union on `type`, config_methods.py).

    method: {type: sft}                                                   # methods/sft.py
    method: {type: classifier, loss: focal, class_weights: balanced}      # methods/classifier.py
    method: {type: dpo, beta: 0.1}          # also simpo, orpo: preference pairs; kto: single answers marked
                                            # desirable or not; methods/preference.py
    method: {type: reward_model}            # a scalar score per answer, from pairs: methods/reward.py

Adding a method is one module, its settings section in config_methods.py's `MethodConfig`, and one line in METHODS.
The modules are imported when first asked for: a server that only lists runs never imports a training method.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunesmith.config import Config
    from tunesmith.methods.base import Method

# method type -> "module:class"
METHODS = {
    "sft": "tunesmith.methods.sft:SFT",
    "classifier": "tunesmith.methods.classifier:Classifier",
    "dpo": "tunesmith.methods.preference:Preference",
    "simpo": "tunesmith.methods.preference:Preference",
    "orpo": "tunesmith.methods.preference:Preference",
    "kto": "tunesmith.methods.preference:Preference",
    "reward_model": "tunesmith.methods.reward:RewardModel",
}


def method_class(name: str) -> type[Method]:
    """The class that implements method `name` (a `method.type` value)."""
    module, _, attr = METHODS[name].partition(":")
    return getattr(import_module(module), attr)


def build_method(cfg: Config) -> Method:
    """The training method cfg selects, configured by its `method:` section."""
    return method_class(cfg.method.type)(cfg)

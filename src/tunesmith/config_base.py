"""The base every config section derives from: strict keys, no NaN or infinity, and no boolean where a number
belongs (config.py, config_methods.py)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _takes(annotation: Any, *types_: type) -> bool:
    """Whether a field's annotation (unions, lists and tuples included) accepts one of these types."""
    if annotation in types_:
        return True
    return any(_takes(arg, *types_) for arg in get_args(annotation))


def _holds_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value))


class Strict(BaseModel):
    # allow_inf_nan=False: `lr: .inf` or `epochs: .nan` would otherwise pass and train NaN weights.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for an int or float field, so `max_steps: true` would train one step; YAML also
        # reads yes/no/on/off as booleans. A number field takes a number.
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        if _holds_bool(value) and _takes(annotation, int, float) and not _takes(annotation, bool):
            raise ValueError("expected a number, got a boolean (YAML reads true/false/yes/no/on/off as booleans)")
        return value

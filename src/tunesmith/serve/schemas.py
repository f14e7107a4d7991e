"""Request bodies of the OpenAI-compatible routes (they also document the API in the OpenAPI schema).

Fields OpenAI defines that this server does not act on (user, logit_bias, ...) are accepted and ignored, as
clients send them freely; fields whose meaning would silently change an answer (tools, logprobs) are refused.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# torch.Generator.manual_seed takes any 64-bit pattern: -2**63 .. 2**64 - 1 (negative ones wrap around).
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
MAX_STOP_CHARS = 256  # every new token is checked against each stop's prefixes: a huge stop would stall a batch


def lone_surrogate(value: Any) -> str | None:
    """The dotted path of the first string in `value` holding a lone UTF-16 surrogate (JSON's "\\ud800" escape
    decodes to one), which no tokenizer, database or file encoding accepts; None when there is none. Walks with
    its own stack, so a deeply nested body cannot exhaust Python's."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return path or "body"
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                where = f"{path}.{key}" if path else str(key)
                stack += [(where, child), (where, key)]
        elif isinstance(item, list | tuple):
            stack += [(f"{path}.{i}" if path else str(i), child) for i, child in reversed(list(enumerate(item)))]
    return None


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class RequestBody(Lenient):
    """A request body: refused whole when any string in it (extra fields too) is not valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = lone_surrogate(data)
        if where is not None:
            raise PydanticCustomError(
                "lone_surrogate", "{param} holds a lone UTF-16 surrogate, which is not valid Unicode text",
                {"param": where},
            )  # fmt: skip
        return data


class StreamOptions(Lenient):
    include_usage: bool = Field(False, description="Send a last chunk with the usage counts (and no choices).")


class Sampled(RequestBody):
    model: str = Field(description="A base model id, or `ft:<base>:<run-name>` for a tuned run (GET /v1/models).")
    temperature: float = Field(1.0, ge=0, le=2, description="0 is greedy; higher spreads the choice.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: keep the smallest head of this mass.")
    n: int = Field(1, ge=1, le=16, description="Answers per prompt.")
    max_tokens: int | None = Field(None, ge=0, description="Tokens per answer (default: the server's --max-tokens).")
    stop: str | list[str] | None = Field(
        None, description=f"Up to 4 strings of at most {MAX_STOP_CHARS} characters that end an answer (not included)."
    )
    seed: int | None = Field(
        None, ge=SEED_MIN, le=SEED_MAX, description="Same seed, same settings, same prompt: the same answer."
    )
    stream: bool = Field(False, description="Send server-sent events in OpenAI's chunk format, then [DONE].")
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = Field(None, description="Not supported: must be absent, null or false.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s or len(s) > MAX_STOP_CHARS for s in stops)):
            raise ValueError(f"stop takes up to 4 non-empty strings of at most {MAX_STOP_CHARS} characters")
        return stops

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> None:
        if value:
            raise ValueError("logprobs are not supported by this server")
        return None


class ChatMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"content parts of type {part.get('type')!r} are not supported; send text")
            parts.append(part["text"])
        return "".join(parts)


class ChatCompletionRequest(Sampled):
    """POST /v1/chat/completions. The messages are rendered with the model's own chat template, exactly as its
    training rendered them."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0, description="Same as max_tokens (OpenAI's newer name).")
    tools: list[dict[str, Any]] | None = Field(None, description="Not supported: must be absent.")

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list | None) -> None:
        if value:
            raise ValueError("tools are not supported by this server")
        return None


class CompletionRequest(Sampled):
    """POST /v1/completions: raw text continued by the model (no chat template)."""

    prompt: str | list[str] = Field(description="A prompt, or a list of prompts (answers are indexed in order).")
    echo: bool = Field(False, description="Not supported: must be false.")

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported by this server")
        return value


class ClassificationRequest(RequestBody):
    """POST /v1/classifications: label texts with a classifier run (trained with method.type: classifier).

    The response lists, per input in order, the label, its probability and every label's probability:
    `{"object": "list", "model": ..., "data": [{"index": 0, "label": "positive", "probability": 0.93,
    "probabilities": {"negative": 0.07, "positive": 0.93}}], "usage": {"prompt_tokens": N, "total_tokens": N}}`.
    Inputs are encoded as the run's training rows were (its prompt format and template)."""

    model: str = Field(description="`ft:<base>:<run-name>` of a classification-head run.")
    input: str | list[str] = Field(description="A text or a list of texts (at most 256).")

    @field_validator("input")
    @classmethod
    def _inputs(cls, value: str | list[str]) -> list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or len(texts) > 256:
            raise ValueError("input takes 1 to 256 texts")
        return texts


class ScoredAnswer(Lenient):
    prompt: str | list[dict[str, str]] = Field(
        description="The user's message, or the conversation so far as chat messages (ending with the user's)."
    )
    answer: str = Field(description="The assistant's reply to score.")

    @field_validator("prompt")
    @classmethod
    def _conversation(cls, value: str | list[dict[str, str]]) -> str | list[dict[str, str]]:
        if isinstance(value, list):
            if not value or any(set(m) != {"role", "content"} for m in value):
                raise ValueError("a conversation is a non-empty list of {role, content} messages")
            if value[-1]["role"] != "user":
                raise ValueError("the conversation must end with the user's message")
        return value


class RewardRequest(RequestBody):
    """POST /v1/rewards: score answers with a reward-model run (trained with method.type: reward_model).

    Each input is a prompt (or the conversation so far) and an answer, rendered as the run's training pairs were
    (its chat template and system message); the score is the head's output, higher for answers the run's data
    preferred. Scores compare answers to the same prompt; they have no fixed scale. The response lists, per input in
    order: `{"object": "list", "model": ..., "data": [{"index": 0, "score": 1.73}], "usage": {"prompt_tokens": N,
    "total_tokens": N}}`."""

    model: str = Field(description="`ft:<base>:<run-name>` of a reward-model run.")
    input: list[ScoredAnswer] = Field(description="1 to 256 answers to score.")

    @field_validator("input")
    @classmethod
    def _inputs(cls, value: list[ScoredAnswer]) -> list[ScoredAnswer]:
        if not value or len(value) > 256:
            raise ValueError("input takes 1 to 256 answers")
        return value


class Hyperparameters(Lenient):
    n_epochs: int | Literal["auto"] = Field("auto", description="Passes over the training file (auto: by its size).")
    batch_size: int | Literal["auto"] = Field("auto", description="Examples per optimizer step.")
    learning_rate_multiplier: float | Literal["auto"] = Field(
        "auto", description="Times tunesmith's default LoRA learning rate (train.lr, 2e-4)."
    )

    @field_validator("n_epochs", "batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 1000:
            raise ValueError("must be 'auto' or an integer from 1 to 1000")
        return value

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _positive_rate(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not 0 < value <= 100:
            raise ValueError("must be 'auto' or a number above 0 and at most 100")
        return value


class Supervised(Lenient):
    hyperparameters: Hyperparameters | None = None


class DPOHyperparameters(Hyperparameters):
    beta: float | Literal["auto"] = Field(
        "auto", description="How far the tuned model may move from the base (auto: 0.1); higher keeps it closer."
    )

    @field_validator("beta")
    @classmethod
    def _positive_beta(cls, value: float | str) -> float | str:
        if isinstance(value, float | int) and not 0 < value <= 100:
            raise ValueError("must be 'auto' or a number above 0 and at most 100")
        return value


class DPO(Lenient):
    hyperparameters: DPOHyperparameters | None = None


class Method(Lenient):
    type: Literal["supervised", "dpo"] = Field(
        description="supervised: chat or prompt/completion rows; dpo: preference rows in OpenAI's format "
        "(input.messages, preferred_output, non_preferred_output)."
    )
    supervised: Supervised | None = None
    dpo: DPO | None = None


class JobCreate(RequestBody):
    """POST /v1/fine_tuning/jobs. Training runs `tunesmith train` on a LoRA adapter with checkpoints, held-out
    evaluation and resume; `overrides` (a tunesmith extension) passes `key=value` settings for the train, adapter,
    eval and audit sections, e.g. `["train.max_steps=50", "adapter.r=8"]`."""

    model: str = Field(description="A base model id or a finished `ft:` model (training continues from it).")
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = Field(None, description="Deprecated by OpenAI in favour of method.")
    method: Method | None = None
    suffix: str | None = Field(None, max_length=64, description="Part of the run name: letters, digits, - and _.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(None, description="Up to 16 pairs: keys of 64, values of 512 characters.")
    overrides: list[str] = Field(
        default_factory=list, max_length=64, description="tunesmith config overrides (see above)."
    )

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("metadata takes up to 16 pairs, keys of at most 64 and values of at most 512 characters")
        return value

    @property
    def method_type(self) -> str:
        return self.method.type if self.method is not None else "supervised"

    def resolved_hyperparameters(self) -> Hyperparameters:
        method = self.method
        if method is not None and method.type == "dpo":
            given = method.dpo.hyperparameters if method.dpo else None
            return given or DPOHyperparameters(**(self.hyperparameters.model_dump() if self.hyperparameters else {}))
        if method is not None and method.supervised and method.supervised.hyperparameters:
            return method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()

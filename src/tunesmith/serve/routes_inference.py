"""Inference routes: GET /v1/models, POST /v1/chat/completions, /v1/completions, /v1/classifications and /v1/rewards.

Prompts are tokenized here (the tokenizer loads without the weights) so that a bad request fails with a 400 before
it queues; the model thread (batcher.py) decodes it with whatever arrived at the same time. Tokenizing runs in the
thread pool, never on the event loop: a prompt of megabytes must not hold up every other request (or /health).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tunesmith.errors import TunesmithError
from tunesmith.serve.batcher import Classification, Generation, Scoring
from tunesmith.serve.catalog import ModelEntry, UnknownModel
from tunesmith.serve.decode import Sampling, Sequence
from tunesmith.serve.engines import Profile
from tunesmith.serve.errors import ApiError, error_body
from tunesmith.serve.schemas import (
    ChatCompletionRequest,
    ClassificationRequest,
    CompletionRequest,
    RewardRequest,
    Sampled,
)
from tunesmith.serve.state import ServerState

router = APIRouter(prefix="/v1")


def _state(request: Request) -> ServerState:
    return request.app.state.server


def _entry(state: ServerState, model_id: str) -> ModelEntry:
    try:
        return state.catalog.get(model_id)
    except UnknownModel as err:
        raise ApiError(404, str(err), "model", "model_not_found") from None


async def _profile(state: ServerState, entry: ModelEntry) -> Profile:
    try:
        return await run_in_threadpool(state.engines.profile, entry)
    except TunesmithError as err:
        raise ApiError(400, str(err), "model") from None


@router.get("/models", summary="The base models and every finished run")
async def list_models(request: Request) -> dict[str, Any]:
    entries = await run_in_threadpool(_state(request).catalog.all)
    return {"object": "list", "data": [e.as_json() for e in entries]}


@router.get("/models/{model_id}", summary="One model")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    return _entry(_state(request), model_id).as_json()


# --- generation ----------------------------------------------------------------------------------------------


def _sequences(state: ServerState, req: Sampled, prompt: list[int], limit: int | None, context: int) -> list[Sequence]:
    if len(prompt) >= context:
        raise ApiError(400, f"the prompt has {len(prompt)} tokens; this model's context is {context}", "messages")
    room = context - len(prompt)
    if limit is not None and limit > room:
        raise ApiError(
            400,
            f"max_tokens {limit} plus the prompt's {len(prompt)} tokens exceed this model's context of {context}",
            "max_tokens",
        )
    max_tokens = min(room, limit if limit is not None else state.settings.default_max_tokens)
    # Choice i samples with seed + i, wrapped into torch's 64-bit range (the schema admits exactly that range).
    seeds = [None if req.seed is None else (req.seed + i) % 2**64 for i in range(req.n)]
    stops = list(req.stop or [])
    return [Sequence(prompt, Sampling(max_tokens, req.temperature, req.top_p, stops, seed)) for seed in seeds]


def _usage(prompts: list[list[int]], sequences: list[Sequence]) -> dict[str, int]:
    prompt_tokens = sum(len(p) for p in prompts)
    completion = sum(len(s.tokens) for s in sequences)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _generative(entry: ModelEntry) -> None:
    if not entry.generative:
        raise ApiError(400, f"{entry.id} is a classification run: ask it at POST /v1/classifications", "model")


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _stream(state: ServerState, profile: Profile, sequences: list[Sequence], chunk, usage_chunk) -> StreamingResponse:
    """Answers as server-sent events: each text piece as it is made, a finishing chunk per choice, [DONE]."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
    gone = False
    for i, seq in enumerate(sequences):
        seq.emit = lambda text, i=i: loop.call_soon_threadsafe(pieces.put_nowait, (i, text))
        seq.cancelled = lambda: gone
        seq.streaming = True
    work = Generation(profile, sequences)
    state.batcher.submit(work)
    work.done.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))

    async def events() -> AsyncIterator[str]:
        nonlocal gone
        try:
            for i in range(len(sequences)):
                yield _sse(chunk(i, {"role": "assistant", "content": ""}, None))
            while (item := await pieces.get()) is not None:
                yield _sse(chunk(item[0], {"content": item[1]}, None))
            error = work.done.exception()
            if error is not None:
                status, message = _failure(error)
                yield _sse(error_body(status, message, runs_dir=state.settings.runs_dir))
            else:
                for i, seq in enumerate(sequences):
                    yield _sse(chunk(i, {}, seq.finish_reason))
                if usage_chunk is not None:
                    yield _sse(usage_chunk())
            yield "data: [DONE]\n\n"
        finally:
            gone = True  # a client that left stops its rows at the next token

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _failure(error: BaseException) -> tuple[int, str]:
    """Status and message for a request that failed in the model thread: a user error says what it was; anything
    else is the server's fault and says no more (the traceback stays in the server's log)."""
    if isinstance(error, TunesmithError):
        return 400, str(error)
    return 500, "generation failed on the server; its log has the details"


DISCONNECT_POLL_S = 0.5  # how often a waiting non-streamed request checks that its client is still there


async def _finish(state: ServerState, profile: Profile, sequences: list[Sequence], request: Request) -> None:
    """Decode the answers of a non-streamed request; a client that leaves stops its rows at the next token, as a
    streamed one does, so its decoding stops holding the model thread."""
    gone = False
    for seq in sequences:
        seq.cancelled = lambda: gone
    done = asyncio.wrap_future(state.batcher.submit(Generation(profile, sequences)))
    while not gone:
        finished, _ = await asyncio.wait({done}, timeout=DISCONNECT_POLL_S)
        if finished:
            break
        gone = await request.is_disconnected()
    try:
        await done
    except TunesmithError as err:
        raise ApiError(400, str(err), "model") from None


async def _tokenized(param: str, tokenize: Callable[..., Any], *args: Any) -> Any:
    """`tokenize(*args)` in the thread pool; a text the tokenizer or template refuses is the request's error."""
    try:
        return await run_in_threadpool(tokenize, *args)
    except (ValueError, TypeError, TunesmithError) as err:
        raise ApiError(400, str(err), param) from None


@router.post("/chat/completions", summary="Chat with a base model or a tuned run")
async def chat_completions(req: ChatCompletionRequest, request: Request):
    state = _state(request)
    entry = _entry(state, req.model)
    _generative(entry)
    profile = await _profile(state, entry)
    try:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
    except ValueError as err:
        raise ApiError(400, str(err), "messages") from None
    prompt = await _tokenized("messages", profile.renderer.prompt_ids, messages)
    limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    sequences = _sequences(state, req, prompt, limit, profile.context)
    cid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

    if req.stream:

        def chunk(i: int, delta: dict, finish: str | None) -> dict:
            choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "system_fingerprint": None, "choices": [choice]}  # fmt: skip

        def usage() -> dict:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "choices": [], "usage": _usage([prompt], sequences)}  # fmt: skip

        include = req.stream_options is not None and req.stream_options.include_usage
        return _stream(state, profile, sequences, chunk, usage if include else None)

    await _finish(state, profile, sequences, request)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": s.text, "refusal": None},
            "logprobs": None,
            "finish_reason": s.finish_reason,
        }
        for i, s in enumerate(sequences)
    ]
    return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
            "system_fingerprint": None, "choices": choices, "usage": _usage([prompt], sequences)}  # fmt: skip


@router.post("/completions", summary="Continue raw text (no chat template)")
async def completions(req: CompletionRequest, request: Request):
    state = _state(request)
    entry = _entry(state, req.model)
    _generative(entry)
    profile = await _profile(state, entry)
    texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if not texts or len(texts) > 64:
        raise ApiError(400, "prompt takes 1 to 64 strings", "prompt")
    prompts = await _tokenized("prompt", lambda: [profile.tokenizer(t)["input_ids"] for t in texts])
    if any(not p for p in prompts):
        raise ApiError(400, "a prompt is empty", "prompt")
    limit = req.max_tokens if req.max_tokens is not None else None
    sequences = [s for p in prompts for s in _sequences(state, req, p, limit, profile.context)]
    cid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

    if req.stream:

        def chunk(i: int, delta: dict, finish: str | None) -> dict:
            choice = {"index": i, "text": delta.get("content", ""), "logprobs": None, "finish_reason": finish}
            return {"id": cid, "object": "text_completion", "created": created, "model": req.model,
                    "choices": [choice]}  # fmt: skip

        def usage() -> dict:
            return {"id": cid, "object": "text_completion", "created": created, "model": req.model,
                    "choices": [], "usage": _usage(prompts, sequences)}  # fmt: skip

        include = req.stream_options is not None and req.stream_options.include_usage
        return _stream(state, profile, sequences, chunk, usage if include else None)

    await _finish(state, profile, sequences, request)
    choices = [
        {"index": i, "text": s.text, "logprobs": None, "finish_reason": s.finish_reason}
        for i, s in enumerate(sequences)
    ]
    return {"id": cid, "object": "text_completion", "created": created, "model": req.model,
            "choices": choices, "usage": _usage(prompts, sequences)}  # fmt: skip


@router.post(
    "/classifications",
    summary="Label texts with a classification-head run",
    description=ClassificationRequest.__doc__,
)
async def classifications(req: ClassificationRequest, request: Request) -> dict[str, Any]:
    state = _state(request)
    entry = _entry(state, req.model)
    if entry.generative:
        raise ApiError(400, f"{entry.id} is not a classification run: it answers at /v1/chat/completions", "model")
    if entry.is_reward:
        raise ApiError(400, f"{entry.id} is a reward model: it scores answers at POST /v1/rewards", "model")
    work = Classification(entry, list(req.input))
    try:
        predictions, tokens = await asyncio.wrap_future(state.batcher.submit(work))
    except TunesmithError as err:
        raise ApiError(400, str(err), "input") from None
    data = [
        {"index": i, "label": p.label, "probability": p.probability, "probabilities": p.probabilities}
        for i, p in enumerate(predictions)
    ]
    return {"object": "list", "model": req.model, "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


@router.post("/rewards", summary="Score answers with a reward-model run", description=RewardRequest.__doc__)
async def rewards(req: RewardRequest, request: Request) -> dict[str, Any]:
    state = _state(request)
    entry = _entry(state, req.model)
    if not entry.is_reward:
        answers_at = "/v1/chat/completions" if entry.generative else "/v1/classifications"
        raise ApiError(400, f"{entry.id} is not a reward-model run: it answers at {answers_at}", "model")
    work = Scoring(entry, [(item.prompt, item.answer) for item in req.input])
    try:
        scores, tokens = await asyncio.wrap_future(state.batcher.submit(work))
    except TunesmithError as err:
        raise ApiError(400, str(err), "input") from None
    return {"object": "list", "model": req.model, "data": [{"index": i, "score": s} for i, s in enumerate(scores)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

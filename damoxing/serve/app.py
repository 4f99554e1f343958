"""The HTTP side of `damoxing serve`: OpenAI-compatible endpoints over FastAPI, and the playground at `/`.

    app = create_app(ServeOptions(model="SmolLM2.gguf"))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every request body is validated by a pydantic model; a bad one gets a 400 with OpenAI's error shape,
{"error": {"message", "type", "param", "code"}}, `param` naming the field. Generation runs on the engine thread
(engine.py); a handler waits on an asyncio queue fed from that thread, streams server-sent events when asked,
and cancels its job when the client disconnects or the request times out.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import UserError
from ..inference import GenerationConfig
from .engine import Delta, Done, Engine, Failed, Job, QueueFull

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServeOptions:
    model: str  # HF folder or .gguf file
    model_name: str | None = None  # the id clients send as "model" (default: the folder or file name)
    api_key: str | None = None  # clients must send "Authorization: Bearer KEY"
    max_queue: int = 16  # requests waiting or running; one more gets 429
    max_prompt_tokens: int = 4096
    max_tokens: int = 2048  # the most new tokens one request may ask for
    request_timeout: float = 300.0  # seconds from arrival to the last token
    dtype: str | torch.dtype | None = None  # cast the weights ("bfloat16", ...; None: as stored, GGUF as float32)
    quantized: bool = False  # a .gguf file: run its Q8_0 / Q4_0 / Q4_1 blocks as stored (int8 / int4 kernels)


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
    headers: dict | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# ------------------------------------------------------------------ request bodies
class Request_(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Message(Request_):
    role: Literal["system", "user", "assistant"]
    content: str | list[dict]


class StreamOptions(Request_):
    include_usage: bool = False


class Sampling(Request_):
    """The decoding fields chat and completions share (None: the checkpoint's default)."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    num_beams: int | None = Field(None, ge=1, le=16)
    n: Literal[1] = 1
    stop: str | list[str] | None = Field(None)
    seed: int | None = Field(None, ge=0)
    stream: bool = False
    stream_options: StreamOptions | None = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionRequest(Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False


class EmbeddingRequest(Request_):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


class ClassifyRequest(Request_):
    model: str
    input: str | list[str]


class ExplainRequest(Request_):  # bounds: damoxing/explain/serve.py
    model: str
    input: str = Field(min_length=1, max_length=20_000)
    steps: int = Field(32, ge=2, le=200)


# ------------------------------------------------------------------ the loaded model
class Served:
    """The model and what it can do: generate (a decoder), embed (an encoder), classify (a fine-tuned classifier)."""

    def __init__(self, options: ServeOptions):
        from ..inference.fast import prepare_for_decoding
        from ..io.checkpoint import load_model
        from ..io.finetuned import read_meta
        from ..models import Decoder, Encoder
        from ..tokenizer import load_tokenizer

        path = Path(options.model)
        self.name = options.model_name or path.name.removesuffix(".gguf")
        self.meta = read_meta(path) if path.is_dir() else {}
        if self.meta:  # a fine-tuned folder
            from ..io.finetuned import load_finetuned

            self.model, self.tokenizer, self.meta = load_finetuned(path)
            if options.dtype is not None:
                self.model.to(options.dtype)
        else:
            self.meta = {}
            model = load_model(path, dtype=options.dtype, quantized=options.quantized and path.suffix == ".gguf")
            self.model, self.tokenizer = model.eval(), load_tokenizer(path)
        self.can_generate = isinstance(self.model, Decoder)
        self.can_embed = isinstance(self.model, Encoder)
        self.can_classify = bool(self.meta)
        self.defaults = GenerationConfig()
        if self.can_generate:
            from ..inference import load_generation_config

            prepare_for_decoding(self.model)
            self.defaults = load_generation_config(path)
            if not self.defaults.stop_token_ids and self.tokenizer.eos_id is not None:
                self.defaults = dataclasses.replace(self.defaults, stop_token_ids=(self.tokenizer.eos_id,))


def create_app(options: ServeOptions, served: Served | None = None, engine_thread: bool = True) -> FastAPI:
    """The app over one model. engine_thread=False leaves the engine's loop to the caller: app.state.engine.run()
    on the main thread, with uvicorn on another (see `damoxing serve`: the main thread decodes fastest)."""
    served = served or Served(options)
    engine = (
        Engine(served.model, served.tokenizer, options.max_queue, start=engine_thread) if served.can_generate else None
    )
    app = FastAPI(title="damoxing", description="OpenAI-compatible API over one damoxing model")
    app.state.served, app.state.engine = served, engine
    if engine is not None:
        app.router.on_shutdown.append(engine.close)

    # ---------------------------------------------------------------- errors
    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError):
        return error_response(error.status, error.message, error.param, error.code, error.kind, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        if first.get("type") == "json_invalid":
            return error_response(
                400, f"the request body is not valid JSON: {first.get('msg')}", "body", "invalid_json"
            )
        # a union's member name (str, list[str], ...) is noise in the field's path
        loc = [part for part in loc if not any(c in part for c in "[]") and part not in ("str", "list")]
        param = ".".join(loc) or "body"
        return error_response(400, f"{param}: {first.get('msg')}", param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        return error_response(error.status_code, str(error.detail), None, None)

    @app.middleware("http")
    async def _authorize(request: Request, call_next):
        if (
            options.api_key
            and request.url.path.startswith("/v1/")
            and request.headers.get("authorization") != f"Bearer {options.api_key}"
        ):
            return error_response(
                401,
                "missing or wrong API key: send 'Authorization: Bearer KEY'",
                None,
                "invalid_api_key",
                "authentication_error",
            )
        return await call_next(request)

    # ---------------------------------------------------------------- checks
    def check_model(name: str) -> None:
        if name != served.name:
            raise APIError(
                404,
                f"model {name!r} is not served here; this server serves {served.name!r}",
                "model",
                "model_not_found",
            )

    def need(ability: bool, what: str) -> None:
        if not ability:
            raise APIError(400, f"{served.name} cannot {what}", "model", "unsupported")

    def encode_prompt(text: str, param: str, special: bool) -> list[int]:
        if len(text) > options.max_prompt_tokens * 32:  # cheap check before tokenizing a huge text
            raise APIError(
                400,
                f"{param}: the prompt is longer than {options.max_prompt_tokens} tokens",
                param,
                "context_length_exceeded",
            )
        ids = served.tokenizer.encode(text, add_special_tokens=special)
        if len(ids) > options.max_prompt_tokens:
            raise APIError(
                400,
                f"{param}: the prompt has {len(ids)} tokens, more than the limit of {options.max_prompt_tokens}",
                param,
                "context_length_exceeded",
            )
        if not ids:
            raise APIError(400, f"{param}: the prompt is empty", param, "invalid_value")
        return ids

    def generation_config(body: Sampling, max_tokens: int | None, logprobs: int) -> GenerationConfig:
        max_tokens = max_tokens if max_tokens is not None else min(served.defaults.max_new_tokens, options.max_tokens)
        if max_tokens > options.max_tokens:
            raise APIError(
                400,
                f"max_tokens: {max_tokens} is more than this server's limit of {options.max_tokens}",
                "max_tokens",
                "invalid_value",
            )
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise APIError(400, "stop: give at most 4 non-empty stop strings", "stop", "invalid_value")
        changes = {
            "max_new_tokens": max_tokens,
            "stop_strings": tuple(stops),
            "seed": body.seed,
            "logprobs": logprobs,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "top_k": body.top_k,
            "min_p": body.min_p,
            "repetition_penalty": body.repetition_penalty,
            "num_beams": body.num_beams,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if changes.get("num_beams", 1) > 1 and body.stream:
            raise APIError(400, "num_beams: beam search cannot stream; send stream: false", "num_beams")
        return dataclasses.replace(served.defaults, min_new_tokens=0, **changes)

    async def run(request: Request, prompt_ids: list[int], config: GenerationConfig):
        """Submit a job; yield its events as they come; cancel it when the consumer stops early."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job = Job(
            prompt_ids,
            config,
            lambda e: loop.call_soon_threadsafe(events.put_nowait, e),
            time.monotonic() + options.request_timeout,
        )
        try:
            engine.submit(job)
        except QueueFull:
            raise APIError(
                429,
                f"the server is busy ({options.max_queue} requests waiting or running); retry shortly",
                None,
                "rate_limit_exceeded",
                "rate_limit_error",
                headers={"Retry-After": "1"},
            ) from None
        return job, events

    async def events_of(request: Request, job: Job, events: asyncio.Queue):
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                yield event
                if isinstance(event, (Done, Failed)):
                    return
        finally:
            job.cancel()

    def top_entries(top) -> list[dict]:
        return [
            {
                "token": served.tokenizer.decode([i], skip_special_tokens=False),
                "logprob": lp,
                "bytes": list(served.tokenizer.decode([i], skip_special_tokens=False).encode()),
            }
            for i, lp in top
        ]

    # ---------------------------------------------------------------- endpoints
    @app.get("/health")
    async def health():
        return {"status": "ok", "model": served.name, "pending": engine.pending if engine is not None else 0}

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": served.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "damoxing",
                    "capabilities": capabilities(),
                }
            ],
        }

    def capabilities() -> dict:
        return {
            "generate": served.can_generate,
            "chat": served.can_generate and bool(served.tokenizer.chat_template),
            "embeddings": served.can_embed,
            "classify": served.can_classify,
        }

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        check_model(body.model)
        need(served.can_generate, "generate text")
        if not served.tokenizer.chat_template:
            raise APIError(400, f"{served.name} has no chat template; use /v1/completions", "messages")
        messages = []
        for i, m in enumerate(body.messages):
            if isinstance(m.content, str):
                content = m.content
            else:
                if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in m.content):
                    raise APIError(400, f"messages.{i}.content: only text parts are supported", f"messages.{i}.content")
                content = "".join(part["text"] for part in m.content)
            messages.append({"role": m.role, "content": content})
        try:
            text = served.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        except UserError as error:
            raise APIError(400, f"messages: {error}", "messages") from None
        prompt_ids = encode_prompt(text, "messages", special=False)
        top = body.top_logprobs if body.top_logprobs is not None else (1 if body.logprobs else 0)
        config = generation_config(body, body.max_completion_tokens or body.max_tokens, top if body.logprobs else 0)
        return await respond(request, body, prompt_ids, config, chat_format=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_model(body.model)
        need(served.can_generate, "generate text")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise APIError(400, "prompt: send one prompt per request", "prompt")
        prompt_ids = encode_prompt(prompts[0], "prompt", special=True)
        config = generation_config(body, body.max_tokens, body.logprobs or 0)
        return await respond(request, body, prompt_ids, config, chat_format=False)

    async def respond(request, body, prompt_ids, config, chat_format: bool):
        job, events = await run(request, prompt_ids, config)
        ident = ("chatcmpl-" if chat_format else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        kind = "chat.completion" if chat_format else "text_completion"
        want_logprobs = config.logprobs > 0 if chat_format else body.logprobs is not None

        def logprob_entry(deltas: list[Delta]):
            if not want_logprobs:
                return None
            real = [entry for d in deltas for entry in d.logprobs]  # the tokens of the text these deltas emit
            tokens = [served.tokenizer.decode([entry.token], skip_special_tokens=False) for entry in real]
            if chat_format:
                return {
                    "content": [
                        {
                            "token": t,
                            "logprob": entry.logprob,
                            "bytes": list(t.encode()),
                            "top_logprobs": top_entries(entry.top),
                        }
                        for t, entry in zip(tokens, real)
                    ]
                }
            return {
                "tokens": tokens,
                "token_logprobs": [entry.logprob for entry in real],
                "top_logprobs": [{e["token"]: e["logprob"] for e in top_entries(entry.top)} for entry in real],
                "text_offset": [],
            }

        def usage(done: Done) -> dict:
            return {
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens,
            }

        def chunk(text: str | None, finish: str | None, deltas: list[Delta], role: bool = False) -> dict:
            if chat_format:
                delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
                choice = {"index": 0, "delta": delta, "logprobs": logprob_entry(deltas), "finish_reason": finish}
                return {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": served.name,
                    "choices": [choice],
                }
            return {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": served.name,
                "choices": [
                    {"index": 0, "text": text or "", "logprobs": logprob_entry(deltas), "finish_reason": finish}
                ],
            }

        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage

            async def sse():
                if chat_format:
                    yield f"data: {json.dumps(chunk(None, None, [], role=True))}\n\n"
                async for event in events_of(request, job, events):
                    if isinstance(event, Delta):
                        if event.text or event.logprobs:
                            yield f"data: {json.dumps(chunk(event.text, None, [event]))}\n\n"
                    elif isinstance(event, Done):
                        yield f"data: {json.dumps(chunk(None, event.finish_reason, []))}\n\n"
                        if include_usage:
                            final = chunk(None, None, [])
                            final["choices"], final["usage"] = [], usage(event)
                            yield f"data: {json.dumps(final)}\n\n"
                    elif isinstance(event, Failed):
                        error = {
                            "error": {
                                "message": event.message,
                                "type": "server_error",
                                "param": None,
                                "code": "timeout" if event.status == 504 else "internal_error",
                            }
                        }
                        yield f"data: {json.dumps(error)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(
                sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            )

        deltas: list[Delta] = []
        done = None
        async for event in events_of(request, job, events):
            if isinstance(event, Delta):
                deltas.append(event)
            elif isinstance(event, Failed):
                raise APIError(
                    event.status, event.message, None, "timeout" if event.status == 504 else None, "server_error"
                )
            else:
                done = event
        if done is None:  # the client went away
            return JSONResponse({}, status_code=499)
        text = "".join(d.text for d in deltas)
        if chat_format:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprob_entry(deltas),
                "finish_reason": done.finish_reason,
            }
        else:
            text = (body.prompt if isinstance(body.prompt, str) else body.prompt[0]) + text if body.echo else text
            choice = {"index": 0, "text": text, "logprobs": logprob_entry(deltas), "finish_reason": done.finish_reason}
        return {
            "id": ident,
            "object": kind,
            "created": created,
            "model": served.name,
            "choices": [choice],
            "usage": usage(done),
        }

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        check_model(body.model)
        need(served.can_embed, "embed text (serve an encoder, e.g. all-MiniLM-L6-v2)")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > 256:
            raise APIError(400, "input: give 1 to 256 texts", "input")
        for i, text in enumerate(texts):
            if len(text) > options.max_prompt_tokens * 32:
                raise APIError(400, f"input.{i}: the text is too long", f"input.{i}", "context_length_exceeded")
        vectors, tokens = await asyncio.to_thread(embed, served, texts)
        data = []
        for i, v in enumerate(vectors):
            value = (
                base64.b64encode(v.numpy().astype("<f4").tobytes()).decode()
                if body.encoding_format == "base64"
                else v.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {
            "object": "list",
            "data": data,
            "model": served.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest):
        check_model(body.model)
        need(served.can_classify, "classify text (serve a fine-tuned classifier folder)")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > 256:
            raise APIError(400, "input: give 1 to 256 texts", "input")
        rows = await asyncio.to_thread(classify_texts, served, texts)
        return {"object": "list", "model": served.name, "data": [{"index": i, **row} for i, row in enumerate(rows)]}

    @app.post("/v1/explain")
    async def explain(body: ExplainRequest):
        from ..explain.serve import explain_request

        check_model(body.model)
        need(served.can_classify, "explain a classification (serve a fine-tuned classifier folder)")
        try:
            result = await asyncio.to_thread(explain_request, served, body.input, body.steps)
        except UserError as e:
            raise APIError(400, f"input: {e}", "input", "invalid_value") from None
        return {"object": "explanation", "model": served.name, **result}

    # ---------------------------------------------------------------- the playground
    @app.get("/", include_in_schema=False)
    async def playground():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


@torch.no_grad()
def embed(served: Served, texts: list[str]) -> tuple[torch.Tensor, int]:
    """Mean-pooled, L2-normalised embeddings (as sentence-transformers computes them), (N, C); and the token count."""
    batch = served.tokenizer(texts, max_length=served.tokenizer.model_max_length or 512)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "token_type_ids" in batch:
        inputs["token_type_ids"] = batch["token_type_ids"]
    hidden = served.model.forward_features(**inputs).float()  # (N, T, C)
    mask = batch["attention_mask"].float()[..., None]  # (N, T, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (N, C)
    return torch.nn.functional.normalize(pooled, dim=-1), int(batch["attention_mask"].sum())


def classify_texts(served: Served, texts: list[str]) -> list[dict]:
    from ..inference.predict import predict_records
    from ..tasks import get_task

    task, meta = get_task(served.meta["task"]), served.meta
    return list(
        predict_records(
            served.model,
            served.tokenizer,
            task,
            task.inputs(texts),
            meta["labels"],
            meta.get("max_length"),
            batch_size=32,
        )
    )

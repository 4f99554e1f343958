"""The engine: one thread owns the model and decodes every request; HTTP handlers talk to it through queues.

    engine = Engine(model, tokenizer, max_queue=16)
    job = Job(prompt_ids, config, deliver)       # deliver(event) is called from the engine thread
    engine.submit(job)                           # QueueFull when max_queue requests are waiting or running
    job.cancel()                                 # the client went away: the job ends at the next step

Events are Delta(text, token, logprob, top) as tokens arrive, then one Done(finish_reason, counts) or
Failed(message). Requests run one after another; a request that continues the previous conversation reuses
its key/value cache (session.PrefixCache), so it runs only its new tokens.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..inference import GenerationConfig, generate, generate_stream
from ..inference.session import PrefixCache
from ..inference.streaming import TextStream


class QueueFull(Exception):
    """max_queue requests are waiting or running: the client should retry later."""


@dataclass
class Delta:
    text: str  # new text (may be empty while a UTF-8 character or a possible stop string is incomplete)
    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None  # the most probable tokens and their log-probabilities


@dataclass
class Done:
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    message: str
    status: int = 500


@dataclass
class Job:
    prompt_ids: list[int]
    config: GenerationConfig
    deliver: Callable[[object], None]  # called from the engine thread with each event
    deadline: float = float("inf")  # time.monotonic() after which the job stops
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()


class Engine:
    def __init__(self, model, tokenizer, max_queue: int = 16):
        self.model, self.tokenizer, self.max_queue = model, tokenizer, max_queue
        self.device = next(model.parameters()).device
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.pending = 0  # jobs waiting or running
        self.lock = threading.Lock()
        self.prefix = PrefixCache(model) if hasattr(model, "new_cache") else None
        self.thread = threading.Thread(target=self._run, name="damoxing-engine", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        with self.lock:
            if self.pending >= self.max_queue:
                raise QueueFull
            self.pending += 1
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                if job.cancelled.is_set():
                    continue
                if time.monotonic() > job.deadline:
                    job.deliver(Failed("the request timed out while waiting in the queue", 504))
                    continue
                self._serve(job)
            except Exception as error:  # a bug must not take the engine down: the client hears of it
                job.deliver(Failed(f"generation failed: {type(error).__name__}: {error}"))
            finally:
                with self.lock:
                    self.pending -= 1

    @torch.no_grad()
    def _serve(self, job: Job) -> None:
        if job.config.num_beams > 1:
            return self._beam_search(job)
        config = job.config
        self.prefix.reuse(job.prompt_ids)
        ids = torch.tensor([job.prompt_ids], device=self.device)
        stream = TextStream(self.tokenizer, config.stop_strings)
        stop_ids = set(config.stop_token_ids)
        new: list[int] = []
        finish = "length"
        try:
            for step in generate_stream(self.model, ids, config, cache=self.prefix.cache):
                if job.cancelled.is_set():
                    return
                if time.monotonic() > job.deadline:
                    return job.deliver(Failed("the request timed out", 504))
                token = int(step.tokens[0])
                new.append(token)
                logprob, top = None, None
                if step.logprobs is not None:
                    logprob = float(step.logprobs[0])
                    top = list(zip(step.top_ids[0].tolist(), step.top_logprobs[0].tolist()))
                if token in stop_ids:
                    finish = "stop"
                    break
                job.deliver(Delta(stream.push(token), token, logprob, top))
                if stream.stopped:
                    finish = "stop"
                    break
            if not stream.stopped:
                tail = stream.finish()
                if tail:
                    job.deliver(Delta(tail, -1))
            job.deliver(Done(finish, len(job.prompt_ids), len(new)))
        finally:
            self.prefix.record(job.prompt_ids + new)

    def _beam_search(self, job: Job) -> None:
        """Beam search cannot stream: the best beam arrives as one delta."""
        config = job.config
        ids = torch.tensor([job.prompt_ids], device=self.device)
        new = generate(self.model, ids, config)[0, ids.shape[1]:].tolist()
        stream = TextStream(self.tokenizer, config.stop_strings)
        text, count, finish = "", 0, "length"
        for token in new:
            count += 1
            if token in config.stop_token_ids:
                finish = "stop"
                break
            text += stream.push(token)
            if stream.stopped:
                finish = "stop"
                break
        if not stream.stopped:
            text += stream.finish()
        job.deliver(Delta(text, -1))
        job.deliver(Done(finish, len(job.prompt_ids), count))

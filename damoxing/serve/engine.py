"""The engine: one thread owns the model and decodes every request; HTTP handlers talk to it through queues.

    engine = Engine(model, tokenizer, max_queue=16)   # its own thread; start=False: call engine.run() yourself
    job = Job(prompt_ids, config, deliver)       # deliver(event) is called from the engine thread
    engine.submit(job)                           # QueueFull when max_queue requests are waiting or running
    job.cancel()                                 # the client went away: the job ends at the next step

Events are Delta(text, token, logprobs) as tokens arrive, then one Done(finish_reason, counts) or
Failed(message). Requests share the model through continuous batching (see Engine): a request joins the running
batch at the next step and leaves it when done, so the tokens per second of all clients together grow with their
number. A prompt that continues one of the last few conversations reuses its cached keys and values (Prefixes).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..inference import GenerationConfig, generate
from ..inference.forward import Forward
from ..inference.sampling import History, make_generator, pick, process
from ..inference.streaming import TextStream
from ..layers.attention import KVCache


class QueueFull(Exception):
    """max_queue requests are waiting or running: the client should retry later."""


@dataclass
class TokenLogprob:
    token: int
    logprob: float  # under the model, before penalties and filters
    top: list[tuple[int, float]]  # the most probable tokens and their log-probabilities


@dataclass
class Delta:
    text: str  # new text (may be empty while a UTF-8 character or a possible stop string is incomplete)
    token: int  # the token just generated (-1: none, the text held back until the end)
    # (config.logprobs > 0) the tokens whose text this delta starts to emit: one that is held back (it may begin
    # a stop string) comes with the delta that releases its text, and one wholly inside a stop string never comes
    logprobs: list[TokenLogprob] = field(default_factory=list)


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
    released: bool = False  # its place in the queue is free again

    def cancel(self) -> None:
        self.cancelled.set()


class Row:
    """One request decoding in the batch: its settings, what it has seen, and its text so far."""

    def __init__(self, job: Job, tokenizer, vocab_size: int, device):
        self.job, self.config = job, job.config
        ids = torch.tensor([job.prompt_ids], device=device)  # (1, T)
        self.history = History(ids, torch.ones_like(ids), self.config, vocab_size)
        self.generator = make_generator(self.config, device)
        self.stop_ids = torch.tensor(self.config.stop_token_ids, dtype=torch.long, device=device)
        self.stream = TextStream(tokenizer, self.config.stop_strings)
        self.new: list[int] = []  # tokens generated so far
        self.released = 0  # characters of text delivered so far
        self.unsent: list[tuple[int, TokenLogprob]] = []  # log-probabilities whose text is not out yet, and where
        # that text starts in the decoded output

    def take(self, logits: torch.Tensor) -> Done | None:
        """Pick the next token from (1, V) logits and deliver its text; a Done when the request is done."""
        logits = logits.float()
        token = int(
            pick(process(logits, self.history, len(self.new), self.config, self.stop_ids), self.config, self.generator)[
                0
            ]
        )
        self.new.append(token)
        self.history.append(torch.tensor([token], device=logits.device))
        if token in self.config.stop_token_ids:
            return self.finish("stop")
        if self.config.logprobs:
            logprobs = logits[0].log_softmax(-1)  # (V,) under the model, before penalties and filters
            best = logprobs.topk(self.config.logprobs)
            top = list(zip(best.indices.tolist(), best.values.tolist()))
            start = self.released + len(self.stream.held)  # where this token's text starts in the decoded output
            self.unsent.append((start, TokenLogprob(token, float(logprobs[token]), top)))
        text = self.stream.push(token)
        self.job.deliver(Delta(text, token, self._sent(text)))
        if self.stream.stopped:
            return self.finish("stop")
        if len(self.new) >= self.config.max_new_tokens:
            return self.finish("length")
        return None

    def _sent(self, text: str, everything: bool = False) -> list[TokenLogprob]:
        """Count `text` as delivered; the log-probabilities of the tokens whose text it starts to emit (of every
        one left, when the output ended with no stop string: a token with no text of its own is content too)."""
        self.released += len(text)
        sent = [entry for start, entry in self.unsent if everything or start < self.released]
        self.unsent = self.unsent[len(sent) :]
        return sent

    def finish(self, reason: str) -> Done:
        """Deliver the text held back (an incomplete character at the end); the Done to deliver last."""
        if not self.stream.stopped:
            tail = self.stream.finish()
            sent = self._sent(tail, everything=True)
            if tail or sent:
                self.job.deliver(Delta(tail, -1, sent))
        return Done(reason, len(self.job.prompt_ids), len(self.new))


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens a and b share from the start."""
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


@dataclass
class Kept:
    ids: list[int]  # the tokens whose keys and values `cache` holds, one per position
    cache: KVCache  # batch of one; nobody writes to it once kept


class Prefixes:
    """The keys and values of the last few conversations, for prompts that continue one of them.

    At most `entries` conversations and `max_tokens` cached positions in all; the least recently used goes
    first. A conversation that continues a kept one replaces it (its ids start with the kept ids). `take` copies
    the longest kept prefix of a prompt into a new cache, so kept caches never change and two clients that
    continue one conversation in different ways both find it.
    """

    def __init__(self, model, entries: int = 8, max_tokens: int = 8192):
        if entries < 1 or max_tokens < 1:
            raise ValueError(f"Prefixes needs entries >= 1 and max_tokens >= 1, got {entries} and {max_tokens}")
        self.model, self.entries, self.max_tokens = model, entries, max_tokens
        self.kept: list[Kept] = []  # least recently used first

    @property
    def tokens(self) -> int:
        return sum(len(entry.ids) for entry in self.kept)

    def take(self, prompt_ids: list[int]) -> tuple[KVCache, int]:
        """A new cache holding the keys and values of the longest kept prefix of prompt_ids (at most all but its
        last token, which must run to give logits), with room for the whole prompt; and that prefix's length."""
        best, n = None, 0
        for entry in self.kept:
            shared = min(common_prefix(entry.ids, prompt_ids), len(prompt_ids) - 1)
            if shared > n:
                best, n = entry, shared
        cache = self.model.new_cache()
        if best is None:
            return cache, 0
        self.kept.remove(best)
        self.kept.append(best)  # the most recently used
        for layer, source in zip(cache, best.cache):
            B, H, _, d = source.k.shape
            layer.k = source.k.new_empty((B, H, len(prompt_ids) + 1, d))
            layer.v = source.v.new_empty(layer.k.shape)
            layer.k[:, :, :n], layer.v[:, :, :n] = source.k[:, :, :n], source.v[:, :, :n]
            layer.length = n
        return cache, n

    def keep(self, ids: list[int], cache: KVCache) -> None:
        """Keep `cache` (batch of one), which holds the keys and values of `ids`; it must not change afterwards."""
        if len(ids) != cache.length:
            raise ValueError(f"the cache holds {cache.length} positions but {len(ids)} token ids came with it")
        if not ids:
            return
        for entry in self.kept:
            if entry.ids[: len(ids)] == ids:  # already kept, within a conversation that went further
                self.kept.remove(entry)
                self.kept.append(entry)
                return
        self.kept = [entry for entry in self.kept if ids[: len(entry.ids)] != entry.ids]  # what `ids` continues
        self.kept.append(Kept(list(ids), cache))
        while self.kept and (len(self.kept) > self.entries or self.tokens > self.max_tokens):
            self.kept.pop(0)


IDLE_WAKE_S = 0.25  # how often an idle engine looks up from its queue (for Ctrl-C on the main thread)


class Engine:
    """Continuous batching on one thread. A new request is prefilled alone (B=1, reusing the longest cached prefix
    among the last few conversations), then its keys and values join the batch cache, right-aligned to the
    batch's current column with the columns before it masked. Each step feeds one token per active row, with
    per-row positions and masks, and samples each row with its own settings; a finished row leaves the batch."""

    def __init__(
        self,
        model,
        tokenizer,
        max_queue: int = 16,
        max_batch: int = 32,
        start: bool = True,
        prefix_entries: int = 8,
        prefix_tokens: int = 8192,
    ):
        self.model, self.tokenizer, self.max_queue, self.max_batch = model, tokenizer, max_queue, max_batch
        self.device = next(model.parameters()).device
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.pending = 0  # jobs waiting or running
        self.lock = threading.Lock()
        self.prefixes = Prefixes(model, prefix_entries, prefix_tokens)  # the last few conversations' caches
        self.rows: list[Row] = []
        self.cache = None  # KVCache over the active rows, (B, Hkv, L, d) per layer
        self.mask: torch.Tensor | None = None  # (B, L) bool: the column holds one of the row's tokens
        self.tokens: torch.Tensor | None = None  # (B,) the token each row feeds next
        self.steps = 0  # decode steps run (for tests and the bench)
        self.reused = 0  # the last prefill's prompt tokens that came from the cached prefix
        self.closing = False
        self.thread = None  # start=False: the caller runs run() on a thread of its own (the main one is fastest)
        if start:
            self.thread = threading.Thread(target=self.run, name="damoxing-engine", daemon=True)
            self.thread.start()

    def submit(self, job: Job) -> None:
        with self.lock:
            if self.pending >= self.max_queue:
                raise QueueFull
            self.pending += 1
        self.jobs.put(job)

    def close(self) -> None:
        self.closing = True
        self.jobs.put(None)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)

    def _end(self, job: Job, event: Done | Failed | None = None) -> None:
        """Free the job's place in the queue, then deliver its last event (so a client that sends its next
        request as soon as it hears the last one finds the place free)."""
        if not job.released:
            job.released = True
            with self.lock:
                self.pending -= 1
        if event is not None:
            job.deliver(event)

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        """The loop: admit waiting jobs, run one step for the batch; until close(). On Python's main thread it
        runs up to 1.8x faster than on another (OpenMP gives each application thread its own pool, and only the
        main thread's uses both cores fully here), so `damoxing serve` runs it there and uvicorn beside it."""
        while not self.closing:
            try:
                self._admit()
                if self.rows:
                    self._step()
            except Exception as error:  # noqa: BLE001 -- a bug must not take the engine down: clients hear of it
                for row in self.rows:
                    self._end(row.job, Failed(f"generation failed: {type(error).__name__}: {error}"))
                self.rows, self.cache, self.mask, self.tokens = [], None, None, None

    def _admit(self) -> None:
        """Take waiting jobs into the batch (wait for one when the batch is empty). The wait wakes every
        IDLE_WAKE_S: Python runs signal handlers on the main thread only, and a Ctrl-C the kernel hands to another
        thread (uvicorn's) does not interrupt a main thread blocked in an endless wait."""
        while len(self.rows) < self.max_batch:
            try:
                job = self.jobs.get(timeout=IDLE_WAKE_S) if not self.rows else self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self.closing = True
                return
            try:
                if job.cancelled.is_set():
                    self._end(job)
                elif time.monotonic() > job.deadline:
                    self._end(job, Failed("the request timed out while waiting in the queue", 504))
                elif job.config.num_beams > 1:
                    self._end(job, self._beam_search(job))
                else:
                    self._prefill(job)
            except Exception as error:  # noqa: BLE001 -- the one request fails, the engine goes on
                self._end(job, Failed(f"generation failed: {type(error).__name__}: {error}"))

    @torch.no_grad()
    def _prefill(self, job: Job) -> None:
        """Run the prompt alone, take its first token, and put its keys and values into the batch."""
        ids = torch.tensor([job.prompt_ids], device=self.device)  # (1, T)
        cache, self.reused = self.prefixes.take(job.prompt_ids)
        forward = Forward(self.model, ids, None, cache, 1)
        logits = forward.prefill(ids)  # (1, V)
        self.prefixes.keep(job.prompt_ids, cache)  # the prompt alone, until its reply is done
        row = Row(job, self.tokenizer, logits.shape[-1], self.device)
        done = row.take(logits)
        if done is not None:
            self._end(job, done)
            return
        self._join(row, cache, len(job.prompt_ids))

    def _join(self, row: Row, cache, n: int) -> None:
        """Copy the row's n cached positions into the batch, right-aligned with the batch's columns."""
        token = torch.tensor([row.new[-1]], device=self.device)
        if not self.rows:
            self.cache = self.model.new_cache()
            for layer, source in zip(self.cache, cache):
                layer.k, layer.v = source.k[:, :, :n].clone(), source.v[:, :, :n].clone()
                layer.length = n
            self.mask = torch.ones(1, n, dtype=torch.bool, device=self.device)
            self.rows, self.tokens = [row], token
            return
        B, L = self.mask.shape
        width = max(L, n)
        old, new = width - L, width - n  # how far the batch and the new row shift right
        for layer, source in zip(self.cache, cache):
            for name in ("k", "v"):
                buffer = getattr(layer, name)
                merged = buffer.new_zeros((B + 1, buffer.shape[1], width, buffer.shape[3]))  # zeros: no NaN
                merged[:B, :, old:] = buffer[:, :, :L]
                merged[B, :, new:] = getattr(source, name)[0, :, :n]
                setattr(layer, name, merged)
            layer.length = width
        mask = torch.zeros(B + 1, width, dtype=torch.bool, device=self.device)
        mask[:B, old:], mask[B, new:] = self.mask, True
        self.mask = mask
        self.rows.append(row)
        self.tokens = torch.cat([self.tokens, token])

    @torch.no_grad()
    def _step(self) -> None:
        """One token for every active row; rows that finish (or whose client left) leave the batch."""
        now = time.monotonic()
        leaving = []
        for i, row in enumerate(self.rows):
            if row.job.cancelled.is_set():
                self._end(row.job)
                leaving.append(i)
            elif now > row.job.deadline:
                self._end(row.job, Failed("the request timed out", 504))
                leaving.append(i)
        if leaving:
            self._leave(leaving)
            if not self.rows:
                return
        B, L = self.mask.shape
        self.mask = torch.cat([self.mask, self.mask.new_ones(B, 1)], dim=1)  # (B, L + 1)
        positions = self.mask[:, :L].sum(1, keepdim=True)  # (B, 1) each row's own count of tokens so far
        hidden = self.model.forward_features(self.tokens[:, None], self.mask, positions, cache=self.cache)
        logits = self.model.forward_head(hidden)[:, -1]  # (B, V)
        self.steps += 1
        finished = []
        for i, row in enumerate(self.rows):
            done = row.take(logits[i : i + 1])
            if done is not None:
                self._keep_conversation(i)
                self._end(row.job, done)
                finished.append(i)
        self.tokens = torch.tensor([row.new[-1] for row in self.rows], device=self.device)
        if finished:
            self._leave(finished)

    def _keep_conversation(self, i: int) -> None:
        """Copy row i's keys and values (prompt and reply) out of the batch and keep them, so that a request
        continuing this conversation runs only its new tokens."""
        row, start = self.rows[i], int(self.mask[i].long().argmax())  # the row's first column
        fed = row.job.prompt_ids + row.new[:-1]  # the last new token was never fed
        length = self.cache.length
        if length - start != len(fed):
            return
        kept = self.model.new_cache()
        for layer, target in zip(self.cache, kept):
            target.k = layer.k[i : i + 1, :, start:length].clone()
            target.v = layer.v[i : i + 1, :, start:length].clone()
            target.length = length - start
        self.prefixes.keep(fed, kept)

    def _leave(self, indices: list[int]) -> None:
        """Drop rows (their jobs have ended); then drop the leading columns no remaining row uses."""
        keep = [i for i in range(len(self.rows)) if i not in set(indices)]
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.cache, self.mask, self.tokens = None, None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.mask, self.tokens = self.mask[index], self.tokens[index]
        first = int(self.mask.any(0).long().argmax())  # the first column any row uses
        for layer in self.cache:
            layer.k = layer.k[index, :, first : layer.length].contiguous()
            layer.v = layer.v[index, :, first : layer.length].contiguous()
            layer.length -= first
        self.mask = self.mask[:, first:]

    @torch.no_grad()
    def _beam_search(self, job: Job) -> Done:
        """Beam search cannot stream nor share the batch: it runs alone and the best beam arrives as one delta."""
        config = job.config
        ids = torch.tensor([job.prompt_ids], device=self.device)
        new = generate(self.model, ids, config)[0, ids.shape[1] :].tolist()
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
        return Done(finish, len(job.prompt_ids), count)

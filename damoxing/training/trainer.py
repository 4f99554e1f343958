"""The training loop: one `Trainer.fit()` to read top to bottom.

    trainer = Trainer(model, "clm", train_batches, TrainConfig(...), run_dir="runs/x", save=save, load=load,
                      eval_data=eval_batches, run_config=resolved_dict)
    result = trainer.fit()          # {"step", "stopped_early", "best", "eval": {...}}

What goes in:
- `model`: any nn.Module. Only parameters with requires_grad=True are optimised, so a fine-tuning
  method (freezing, LoRA) just chooses what trains before handing the model over.
- `task`: a registered task name or a `damoxing.tasks.Task`: how a batch becomes summed losses, their
  target counts and its number of items (tokens, images, rows; see tasks/base.py for the contract).
  The loop never looks inside a batch otherwise.
- `train_data`, `eval_data`: batch sources (`len(src)`, `src.batches(epoch, start)`; see batches.py)
  that can start at any micro-batch, which makes resume exact.
- `config`: a TrainConfig (optimiser, schedule, precision, cadence of logs/evals/checkpoints, early stop).
- `run_dir`: checkpoints `step-NNNNNN/`, `best.json`, `metrics.jsonl`, `tensorboard/`, `loss.png`.
- `save(model, folder)` / `load(model, folder)`: write the model's files into a checkpoint folder / read
  them back into `model` (the recipes pass the Hugging Face layout, or LoRA adapters). The Trainer never
  chooses a file format itself.
- `metrics_fn(model) -> dict`: optional extra evaluation metrics, merged into each evaluation.
- `run_config`: the resolved config as a plain dict, saved as config.yaml in every checkpoint.
- `flops_per_token`: FLOPs per item, for the MFU figure in the logs (see flops.py); optional.

What it guarantees:
- the run folder is locked while `fit` runs, and what a killed run left in it is restored or removed first
  (state.py); resume falls back to the newest complete checkpoint when a newer one is damaged, and says so;
- a non-finite loss or gradient norm stops the run with a message naming the step (train.nonfinite: stop),
  or skips the step (skip; at most train.max_skipped_steps in a row). Under fp16 the GradScaler skips
  overflowing steps by design: the run stops only after max_skipped_steps of them in a row. Non-finite
  weights are never saved, and a non-finite evaluation is never the best;
- Ctrl-C stops after the current step, saves a checkpoint and raises `Interrupted` (a KeyboardInterrupt)
  whose message says where the progress is; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, DataError, UserError
from ..models.base import ModelBase
from ..tasks import Task, get_task
from . import distributed, state
from .config import TrainConfig
from .flops import device_peak, mfu
from .logs import RunLog
from .memory import reuse_freed_memory
from .optim import build_optimizer, lr_at, set_lr

HOLD_BYTES = 2 << 30  # weights + optimiser state up to this size may be held in memory (train.save_minutes)


class TaskModule(nn.Module):
    """model + task as one module, so DDP/FSDP/torch.compile see the whole forward pass."""

    def __init__(self, model: nn.Module, loss: Callable):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: dict):
        return self.loss(self.model, batch)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says which checkpoint holds the progress, or why none was saved."""


class _CtrlC:
    """While active, a first Ctrl-C only sets `requested` (the loop saves and stops after the current step);
    a second one raises KeyboardInterrupt at once. Signal handlers exist only in the main thread."""

    def __init__(self, verbose: bool):
        self.requested, self.verbose, self.previous = False, verbose, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.verbose:
            print(
                "\nCtrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again stops at once, "
                "without saving)",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        task: str | Task,
        train_data,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        save: Callable,
        load: Callable,
        eval_data=None,
        metrics_fn: Callable | None = None,
        run_config: dict | None = None,
        flops_per_token: float | None = None,
        dist: distributed.Dist | None = None,
        param_groups: list[dict] | None = None,
    ):
        self.config, self.run_dir = config, Path(run_dir)
        if config.lr is None:
            raise UserError("train.lr: give a learning rate (the fine-tuning recipe chooses one per method)")
        if config.reuse_memory and next(model.parameters()).device.type == "cpu":
            reuse_freed_memory()  # the large tensors of every step reuse memory instead of faulting pages in
        if config.threads is not None:  # train.threads; otherwise the process's setting stands (the recipes set
            torch.set_num_threads(config.threads)  # it to the physical cores, and a forked worker keeps its own)
        self.task = get_task(task, key="train.task")
        self.dist = dist or distributed.Dist(device=next(model.parameters()).device)
        self.model = model.to(self.dist.device)
        self.train_data, self.eval_data, self.metrics_fn = train_data, eval_data, metrics_fn
        # FSDP shards the parameters; rank 0 writes and reads HF checkpoints through an unsharded copy
        self.sharded = config.distributed == "fsdp" and self.dist.enabled
        if self.sharded and param_groups is not None:
            raise UserError("train.distributed: fsdp does not take custom parameter groups; use ddp")
        self.full_model = copy.deepcopy(self.model) if self.sharded and self.dist.main else None
        self.save = lambda folder: save(self.full_model or self.model, folder)
        self.load = lambda folder: load(self.full_model or self.model, folder)
        self.run_config, self.flops_per_token = run_config, flops_per_token
        if len(train_data) == 0:
            raise DataError("the training data is too small for one batch per rank: add data or lower train.batch_size")
        # wrap first: FSDP replaces the parameters, and the optimiser must hold the new ones
        units = self.model.fsdp_units() if isinstance(self.model, ModelBase) else []
        self.runner = distributed.wrap(TaskModule(self.model, self.task.loss), self.dist, config.distributed, units)
        self.optimizer = build_optimizer(self.model, config, param_groups)  # groups may carry an lr_scale
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.dtype = _autocast_dtype(config.precision, self.dist.device)
        self.scaler = torch.amp.GradScaler(self.dist.device.type, enabled=self.dtype == torch.float16)
        # a fused Adam(W) takes the clipping coefficient as its `grad_scale` (the attribute GradScaler sets for
        # fused optimisers), so clipping costs no pass of its own; fp16 needs that attribute for its scale
        # (a float32 number: float64 weights keep the exact coefficient of the separate pass)
        fused = self.optimizer.defaults.get("fused") is True
        narrow = all(p.dtype != torch.float64 for p in self.params)
        self._clip_in_step = fused and narrow and not self.scaler.is_enabled() and not self.sharded
        if config.compile:
            self.runner = torch.compile(self.runner)
        # progress: optimiser steps done, data position (epoch, micro-batch), best evaluation so far
        self.step, self.epoch, self.batch_index, self.tokens_seen = 0, 0, 0, 0
        self.best = {"value": None, "step": -1, "bad_evals": 0}
        self._batches, self._saved_step = None, None
        # a checkpoint held in memory (train.save_minutes) and when one was last written
        self._held, self._written_at = None, time.perf_counter()

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool | str | Path = False) -> dict:
        """Train to train.max_steps (or the epoch/time limit, or an early stop); `resume`: False, True (the
        newest complete checkpoint in the run folder), or a checkpoint folder."""
        d = self.dist
        with state.run_folder(self.run_dir, d, check=False), _CtrlC(verbose=d.main) as ctrl_c:
            self._start(resume)
            log = RunLog(
                self.run_dir,
                self.config.max_steps,
                self.step,
                enabled=d.main,
                tensorboard=self.config.tensorboard,
                progress_seconds=self.config.progress_seconds,
            )
            try:
                return self._loop(log, ctrl_c)
            except KeyboardInterrupt as e:
                if isinstance(e, Interrupted):
                    raise
                raise Interrupted(f"stopped at once at step {self.step} without saving; {self._last_saved()}") from None
            finally:
                log.close(plot=self.config.plot)

    def _loop(self, log: RunLog, ctrl_c: _CtrlC) -> dict:
        c, d = self.config, self.dist
        peak = device_peak(d.device, self.dtype) if self.flops_per_token else None
        sums, n_items, n_steps, skipped, t0 = {}, 0, 0, 0, time.perf_counter()
        stop, out_of_time, last_eval, started = False, False, None, time.perf_counter()
        in_a_row = 0  # consecutive skipped steps
        self.runner.train()
        while self.step < c.max_steps and not stop and not out_of_time:
            # 1. learning rate for this step
            lr = lr_at(self.step, c)
            set_lr(self.optimizer, lr)

            # 2. the micro-batches of this step; their target counts normalise the loss of the whole step
            micro = self._next_micro_batches(c.grad_accum)
            if not micro:
                break  # train.epochs reached
            totals = {}
            for b in micro:
                for k, v in self.task.targets(b).items():
                    totals[k] = totals.get(k, 0) + v
            totals = distributed.all_sum(totals, d)

            # 3. forward and backward per micro-batch; gradients summed, all-reduced on the last one only
            terms = {}
            for i, batch in enumerate(micro):
                with distributed.no_sync(self.runner, i < len(micro) - 1), self._autocast():
                    out = self.runner(batch)
                    loss = sum(out.losses[k] / totals[k].clamp(min=1).to(out.losses[k].device) for k in out.losses)
                self.scaler.scale(loss * d.world).backward()  # DDP averages over ranks; we want the sum
                for k, v in out.losses.items():
                    terms[k] = terms.get(k, 0.0) + v.detach().double() / totals[k].clamp(min=1).cpu().double()
                n_items += self.task.items(batch)

            # 4. check, clip and step: a non-finite loss or gradient norm never reaches the weights
            self.scaler.unscale_(self.optimizer)
            norm = self._grad_norm()
            finite, ctrl_c_pressed = self._step_flags(sum(terms.values()), norm, ctrl_c.requested)
            if finite:
                self.scaler.step(self.optimizer)
                in_a_row = 0
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_steps += 1
            else:
                in_a_row, skipped = in_a_row + 1, skipped + 1
                self._non_finite(terms, norm, in_a_row, log)  # raises when the run must stop
            self.optimizer.grad_scale = None
            self.scaler.update()  # fp16: lowers the scale after an overflow
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            log.advance()

            # 5. log, evaluate, checkpoint, early stop
            if self.step % c.log_every == 0 or self.step == c.max_steps:
                elapsed = time.perf_counter() - t0
                means = {
                    k: float(v) / n_steps
                    for k, v in distributed.all_sum({k: torch.as_tensor(v) for k, v in sums.items()}, d).items()
                }
                ips = n_items * d.world / max(elapsed, 1e-9)
                record = {
                    "loss": sum(means.values()) if means else math.nan,
                    **(means if len(means) > 1 else {}),
                    "lr": lr,
                    "grad_norm": float(norm),
                    f"{self.task.unit}_per_s": round(ips, 1),
                }
                if skipped:
                    record["skipped_steps"] = skipped
                if (u := mfu(ips, self.flops_per_token or 0, peak, d.world)) is not None:
                    record["mfu"] = round(u, 4)
                self.tokens_seen += n_items * d.world  # items: tokens for text tasks
                log.log(self.step, "train", record)
                sums, n_items, n_steps, skipped, t0 = {}, 0, 0, 0, time.perf_counter()
            at_end, paused = self.step == c.max_steps, time.perf_counter()
            if self.eval_data is not None and ((c.eval_every and self.step % c.eval_every == 0) or at_end):
                last_eval = self.evaluate()
                log.log(self.step, "eval", last_eval)
                improved = self._track_best(last_eval)
                stop = distributed.broadcast_flag(bool(c.patience) and self.best["bad_evals"] >= c.patience, d)
                if stop or (c.save_every and self.step % c.save_every == 0) or at_end:
                    self._checkpoint(best=improved)
                elif improved:
                    self._checkpoint(best=True, hold=True)  # in memory until train.save_minutes have passed
            elif (c.save_every and self.step % c.save_every == 0) or at_end:
                self._checkpoint()
            if self._held is not None and time.perf_counter() - self._written_at >= 60 * c.save_minutes:
                self._write_held()
            t0 += time.perf_counter() - paused  # evaluation and checkpoints do not count against tokens/s
            if c.max_minutes:
                out_of_time = distributed.broadcast_flag(time.perf_counter() - started > 60 * c.max_minutes, d)
            if ctrl_c_pressed:  # on any rank: every rank saves and stops here, after the step
                raise Interrupted(self._save_interrupted())

        if self.step < c.max_steps and not stop:  # out of epochs or time: evaluate and save where we are
            if self.eval_data is not None:
                last_eval = self.evaluate()
                log.log(self.step, "eval", last_eval)
                self._checkpoint(best=self._track_best(last_eval))
            else:
                self._checkpoint()
        if stop:
            best = self.best["value"]
            log.write(
                f"early stop at step {self.step}: no improvement of eval {c.metric} in {c.patience} "
                f"evaluations; best {'none' if best is None else f'{best:.4g}'} at step {self.best['step']}"
            )
        return {"step": self.step, "stopped_early": stop, "best": dict(self.best), "eval": last_eval}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss (summed over terms), each term, perplexity and the task's metrics over the evaluation data,
        accumulated batch by batch as sums: no logits are kept."""
        c, d = self.config, self.dist
        self.model.eval()
        sums, counts, metrics = {}, {}, {}
        for i, batch in enumerate(self.eval_data.batches(0)):
            if c.eval_batches and i >= c.eval_batches:
                break
            batch = _to(batch, d.device)
            # sharded models run through the FSDP root, which gathers its weights; train.eval_precision: fp32
            # evaluates in full precision, as the final evaluation and predict do
            with self._autocast() if c.eval_precision == "train" else contextlib.nullcontext():
                out = self.runner(batch) if self.sharded else self.task.loss(self.model, batch)
            for k, v in self.task.targets(batch).items():
                counts[k] = counts.get(k, 0) + v.double().cpu()
                sums[k] = sums.get(k, 0) + out.losses[k].double().cpu()
            for k, (num, den) in out.metrics.items():
                metrics[f"{k}/num"] = metrics.get(f"{k}/num", 0) + num.double().cpu()
                metrics[f"{k}/den"] = metrics.get(f"{k}/den", 0) + torch.as_tensor(den).double().cpu()
        total = distributed.all_sum(
            {**{f"{k}/sum": v for k, v in sums.items()}, **{f"{k}/count": v for k, v in counts.items()}, **metrics}, d
        )
        terms = {k: float(total[f"{k}/sum"] / total[f"{k}/count"].clamp(min=1)) for k in sums}
        result = {"loss": sum(terms.values()), **(terms if len(terms) > 1 else {})}
        if self.task.perplexity in terms:
            result["perplexity"] = math.exp(min(terms[self.task.perplexity], 50.0))
        for k in {m.rsplit("/", 1)[0] for m in metrics}:
            result[k] = float(total[f"{k}/num"] / total[f"{k}/den"].clamp(min=1))
        if self.metrics_fn is not None:
            result.update(self.metrics_fn(self.model))
        self.model.train()
        return result

    # ------------------------------------------------------------------ pieces of the loop
    def _next_micro_batches(self, n: int) -> list[dict]:
        """The next n micro-batches, moving the data position (epoch, batch_index) past them."""
        out = []
        while len(out) < n:
            if self._batches is None:
                if self.config.epochs and self.epoch >= self.config.epochs:
                    break
                self._batches = self.train_data.batches(self.epoch, self.batch_index)
            batch = next(self._batches, None)
            if batch is None:
                self.epoch, self.batch_index, self._batches = self.epoch + 1, 0, None
                continue
            self.batch_index += 1
            out.append(_to(batch, self.dist.device))
        return out

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.dtype)

    def _grad_norm(self) -> float:
        """The global gradient norm (FSDP: over every shard); gradients are clipped to train.clip_grad if set."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = nn.utils.get_total_norm(grads)
        clip = self.config.clip_grad
        if clip and self._clip_in_step:  # the fused step divides the gradients as it reads them: one pass less
            self.optimizer.grad_scale = ((norm.float() + 1e-6) / clip).clamp(min=1.0)  # clip_grad_norm_'s coefficient
        elif clip:
            nn.utils.clip_grads_with_norm_(self.params, clip, norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: a sharded norm

    def _step_flags(self, loss: torch.Tensor, norm: float, ctrl_c: bool) -> tuple[bool, bool]:
        """(the step's loss and gradient norm are finite on every rank, Ctrl-C was pressed on some rank):
        one answer for all ranks, in one all-reduce."""
        bad = not (math.isfinite(float(loss)) and math.isfinite(norm))
        flags = distributed.all_sum({"flags": torch.tensor([float(bad), float(ctrl_c)])}, self.dist)["flags"]
        return float(flags[0]) == 0, float(flags[1]) > 0

    def _non_finite(self, terms: dict, norm: float, in_a_row: int, log: RunLog) -> None:
        """A step with a non-finite loss or gradient norm was not applied: stop, or go on (see the docstring)."""
        c, loss = self.config, float(sum(terms.values()))
        fatal = in_a_row >= c.max_skipped_steps or (not self.scaler.is_enabled() and c.nonfinite == "stop")
        if fatal and self._held is not None:
            self._write_held()  # the best weights so far are not lost with the run
        what, at = (f"loss ({loss})" if not math.isfinite(loss) else f"gradient norm ({norm})"), self.step + 1
        advice = f"lower train.lr, set train.clip_grad, or train in precision bf16 or fp32; {self._last_saved()}"
        if self.scaler.is_enabled():  # fp16: the GradScaler skips an overflowing step and lowers its scale
            if in_a_row >= c.max_skipped_steps:
                raise UserError(
                    f"train: {in_a_row} steps in a row skipped under fp16 (train.max_skipped_steps: "
                    f"{c.max_skipped_steps}), the last at step {at} with a non-finite {what}; {advice}"
                )
            return
        if c.nonfinite == "stop":
            raise UserError(
                f"train: non-finite {what} at step {at}; stopped before it reached the weights "
                f"(train.nonfinite: stop; 'skip' skips such steps). To fix it, {advice}"
            )
        if in_a_row >= c.max_skipped_steps:
            raise UserError(
                f"train: {in_a_row} steps in a row skipped (train.nonfinite: skip, "
                f"train.max_skipped_steps: {c.max_skipped_steps}), the last at step {at} with a "
                f"non-finite {what}; {advice}"
            )
        log.write(f"step {at}: non-finite {what}; the step is skipped (train.nonfinite: skip)")

    def _track_best(self, result: dict) -> bool:
        c = self.config
        if c.metric not in result:
            raise UserError(
                f"train.metric: {c.metric!r} is not an evaluation metric here; "
                f"choose one of {', '.join(sorted(result))}."
            )
        value, best = result[c.metric], self.best["value"]
        better = math.isfinite(value) and (best is None or (value < best if c.metric_mode == "min" else value > best))
        if better:
            self.best = {"value": value, "step": self.step, "bad_evals": 0}
        else:
            self.best["bad_evals"] += 1  # a non-finite evaluation is never the best
        return better

    # ------------------------------------------------------------------ checkpoints and resume
    def _last_saved(self) -> str:
        path = state.latest_checkpoint(self.run_dir)
        return f"the last checkpoint is {path}" if path is not None else "no checkpoint was saved"

    def _weights_finite(self) -> bool:
        local = [p.to_local() if hasattr(p, "to_local") else p for p in self.model.parameters()]  # FSDP: own shard
        bad = torch.stack([~torch.isfinite(p.detach()).all() for p in local]).sum().double().cpu()
        return float(distributed.all_sum({"bad": bad}, self.dist)["bad"]) == 0

    def _checkpoint(self, best: bool = False, hold: bool = False) -> Path | None:
        """Save RUN/step-N (rank 0; collective under FSDP); never non-finite weights. Returns the folder.

        `hold`: the checkpoint of an evaluation that improved. Unless train.save_minutes have passed since the
        last write, it is kept in memory instead (a copy of the weights and the training state, replacing an
        older held one: that one is no longer the best) and written when the time is up, with the next written
        checkpoint, at the end or on Ctrl-C; a kill -9 loses it, as it loses any step after the last write.
        Short runs then write once at the end instead of once per epoch. Not under torchrun, nor for states
        above HOLD_BYTES."""
        d = self.dist
        if not self._weights_finite():
            raise UserError(
                f"train: the weights hold non-finite values after step {self.step}, so no checkpoint "
                f"was saved; lower train.lr, check train.weight_decay and train.clip_grad; "
                f"{self._last_saved()}"
            )
        if hold and self._can_hold() and time.perf_counter() - self._written_at < 60 * self.config.save_minutes:
            self._held = {
                "step": self.step,
                "weights": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "training_state": copy.deepcopy(self._training_state(self.optimizer.state_dict())),
                "best": {"metric": self.config.metric, "value": self.best["value"]},
            }
            return None
        if self._held is not None:
            if self._held["step"] == self.step:
                best = True  # the held checkpoint is this very step's, written now
            elif not best:
                self._write_held()  # still the best: written before this one
            self._held = None  # else this step is better: the held one is no longer needed
        optimizer_state = self.optimizer.state_dict() if not self.sharded else None
        if self.sharded:  # gather the full weights and optimiser state on rank 0 (every rank takes part)
            model_state, optimizer_state = distributed.full_state(self.runner, self.optimizer)
            if d.main:
                self.full_model.load_state_dict({k.removeprefix("model."): v for k, v in model_state.items()})
        path = None
        if d.main:
            path = state.save_checkpoint(
                self.run_dir,
                self.step,
                self.save,
                self._training_state(optimizer_state),
                self.run_config,
                self.config.keep_last,
                best={"metric": self.config.metric, "value": self.best["value"]} if best else None,
            )
        self._saved_step, self._written_at = self.step, time.perf_counter()
        distributed.barrier(d)
        return path

    def _training_state(self, optimizer_state: dict | None) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "tokens_seen": self.tokens_seen,
            "world": self.dist.world,
            "best": dict(self.best),
            "optimizer": optimizer_state,
            "scaler": self.scaler.state_dict(),
            "rng": state.rng_state(),
        }

    def _can_hold(self) -> bool:
        """A checkpoint may be held in memory: one process, and weights + optimiser state within HOLD_BYTES."""
        if self.dist.enabled:
            return False
        tensors = list(self.model.state_dict().values()) + [
            t for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t)
        ]
        return sum(t.numel() * t.element_size() for t in tensors) <= HOLD_BYTES

    def _write_held(self) -> None:
        """Write the checkpoint held in memory: its weights go into the model for `save`, then back."""
        held, self._held = self._held, None
        now = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(held["weights"])
        try:
            state.save_checkpoint(
                self.run_dir,
                held["step"],
                self.save,
                held["training_state"],
                self.run_config,
                self.config.keep_last,
                best=held["best"],
            )
        finally:
            self.model.load_state_dict(now)
        self._written_at = time.perf_counter()

    def _save_interrupted(self) -> str:
        """Ctrl-C: save where we are; the message says where, or why not."""
        where = f"interrupted at step {self.step}"
        if self._saved_step == self.step:
            return f"{where}; the progress is in {self.run_dir / f'step-{self.step:06d}'}"
        try:
            path = self._checkpoint()
        except (UserError, OSError) as e:
            return f"{where}; no checkpoint saved ({e}); {self._last_saved()}"
        return f"{where}; saved {path or 'a checkpoint'}"

    def _start(self, resume: bool | str | Path) -> None:
        """Fresh start, or restore everything from a checkpoint: the newest complete one for resume=True/'auto'
        (a damaged newer one is skipped, and the message says so), or the folder given."""
        if resume in (False, None, "never"):
            state.refuse_earlier_run(self.run_dir)
            return
        explicit = resume not in (True, "auto")
        candidates = [Path(resume)] if explicit else state.step_folders(self.run_dir)[::-1]
        damaged = []
        for path in candidates:
            try:
                self._restore(path)
            except CheckpointError as e:
                if explicit:
                    raise
                damaged.append(str(e))
                continue
            if self.dist.main:
                print(
                    f"resuming from {path} (step {self.step}, epoch {self.epoch}, batch {self.batch_index})", flush=True
                )
                for reason in damaged:
                    print(f"skipped a newer checkpoint: {reason}", flush=True)
            return
        if damaged:
            raise CheckpointError(
                f"{self.run_dir}: no checkpoint can be resumed from ({'; '.join(damaged)}); "
                "move the damaged folders away to start afresh"
            )
        # nothing saved yet: start fresh

    def _restore(self, path: Path) -> None:
        s = state.load_training_state(path)  # CheckpointError when incomplete or unreadable
        if s["world"] != self.dist.world:
            raise UserError(
                f"{path} was written by {s['world']} processes, this run has {self.dist.world}; "
                "resume with the same number of processes"
            )
        if self.sharded:  # rank 0 reads the full state; every rank receives its shards
            model_state, error = {}, None
            if self.dist.main:
                try:
                    self.load(path)
                    model_state = {f"model.{k}": v for k, v in self.full_model.state_dict().items()}
                except CheckpointError as e:
                    error = e
            if distributed.broadcast_flag(error is not None, self.dist):
                raise error or CheckpointError(f"{path}: rank 0 could not read the model")
            distributed.load_full_state(self.runner, self.optimizer, model_state, s["optimizer"])
        else:
            self.load(path)
            self.optimizer.load_state_dict(s["optimizer"])
        self.scaler.load_state_dict(s["scaler"])
        self.step, self.epoch, self.batch_index = s["step"], s["epoch"], s["batch_index"]
        self.tokens_seen, self.best = s["tokens_seen"], dict(s["best"])
        self._saved_step = self.step
        state.set_rng_state(s["rng"])


# ---------------------------------------------------------------------- helpers
def _cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: without them CPU bf16 matmuls are emulated, many times slower than fp32."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device.type == "cpu" and _cpu_has_bf16() else torch.float32
    if precision == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
        warnings.warn(
            "train.precision: bf16 on a CPU without AVX-512 BF16 or AMX runs emulated and is much "
            "slower than fp32 here; use precision: auto (or fp32).",
            stacklevel=3,
        )
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

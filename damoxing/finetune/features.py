"""The `features` method: embed once with the frozen model, cache on disk, fit a small classifier.

    task = get_task("classification")
    feats = cached_features(model, tokenizer, task, records, max_length=256, cache_dir=".cache/features")
    fit_linear_head(model, feats.x, feats.y, task)   # logistic regression -> model.head

The cache file is keyed by a hash of everything the features depend on: the body's weights, the
pooling, the tokenizer, max_length and the records' texts. A second run with the same inputs reads the
file and runs no forward pass; any change gives a new key (stale features are never reused).

The folder is `finetune.cache_dir`, by default ~/.cache/damoxing/features/ ($DAMOXING_CACHE/features).
`damoxing cache list` shows its files and `damoxing cache clear` deletes them: only files with a cache
key's name whose header carries damoxing's marker (and a killed run's temporary files of such names), so
nothing else that lives in the folder is touched.

A logistic regression *is* a linear layer, so its coefficients are written into the model's own
`SequenceHead.classifier` (standardisation folded in): the result is an ordinary checkpoint that
`evaluate` and `predict` use like any other. Regression fits a ridge regression the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError
from ..tasks import SupervisedTask, model_inputs
from ..tasks.base import length_sorted_batches, token_lengths
from .methods import body_parameters

CACHE_VERSION = "1"
MARKER = {"written_by": "damoxing", "content": "features"}  # in every cache file's safetensors header
CACHE_FILE = re.compile(r"[0-9a-f]{32}\.safetensors")  # a cache key's name
LEFTOVER = re.compile(r"\.[0-9a-f]{32}\.safetensors\.\w+\.tmp")  # a killed run's half-written file (atomic_path)


@dataclass
class Features:
    x: torch.Tensor  # (N, C) float32
    y: torch.Tensor | None  # (N,) labels
    path: Path | None  # the cache file
    from_cache: bool


def default_cache_dir() -> Path:
    return Path(os.environ.get("DAMOXING_CACHE", Path.home() / ".cache" / "damoxing")) / "features"


def cache_key(model: nn.Module, tokenizer, task: SupervisedTask, records: list[dict], max_length: int | None) -> str:
    """Hex digest of body weights, model config, tokenizer, max_length and the records' inputs and labels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(CACHE_VERSION.encode())
    for name, p in sorted(body_parameters(model).items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for name, b in sorted(model.named_buffers()):
        if not name.startswith("head."):
            h.update(name.encode())
            h.update(b.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    config = getattr(model, "config", None)
    if config is not None:  # the head fields do not change the features
        fields = {k: v for k, v in vars(config).items() if k not in ("head", "num_labels")}
        h.update(repr(sorted(fields.items())).encode())
    describe = getattr(tokenizer, "fingerprint", None)  # image and tabular processors
    h.update((describe() if describe is not None else tokenizer.backend.to_str()).encode())
    h.update(repr(max_length).encode())
    for r in records:
        h.update(task.record_key(r))
    return h.hexdigest()


@torch.inference_mode()
def embed(
    model: nn.Module, tokenizer, task: SupervisedTask, records: list[dict], max_length: int | None, batch_size: int = 64
) -> torch.Tensor:
    """Pooled features (N, C) of `records` in their order; batches are length-sorted to cut padding, and each
    batch's rows are written back to their records' places."""
    was_training = model.training
    model.eval()
    out = None
    lengths = token_lengths(task, tokenizer, records, max_length)
    for idx in length_sorted_batches(range(len(records)), lengths, batch_size):
        batch = task.encode(tokenizer, [records[i] for i in idx], max_length)
        batch.pop("labels", None)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        hidden = model.forward_features(**model_inputs(model, batch))
        pooled = model.pool(hidden, batch.get("attention_mask")).float().cpu()  # (B, C): what the head sees
        if out is None:
            out = torch.empty(len(records), pooled.shape[1])
        out[torch.tensor(idx)] = pooled
    model.train(was_training)
    return out if out is not None else torch.empty(0, 0)


def cached_features(
    model: nn.Module,
    tokenizer,
    task: SupervisedTask,
    records: list[dict],
    max_length: int | None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> Features:
    """Features of `records`, from the cache when the key matches, else embedded and cached."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / f"{cache_key(model, tokenizer, task, records, max_length)}.safetensors"
    has_labels = bool(records) and "label" in records[0]
    if path.is_file():
        try:
            data = load_file(str(path))
            return Features(data["x"], data.get("y"), path, from_cache=True)
        except Exception as error:  # a damaged cache file is recomputed, never trusted  # noqa: BLE001
            warnings.warn(f"feature cache {path} is unreadable ({error}); recomputing it", stacklevel=2)
    x = embed(model, tokenizer, task, records, max_length, batch_size)
    y = torch.tensor([r["label"] for r in records]) if has_labels else None
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"x": x, **({"y": y} if y is not None else {})}, str(tmp), metadata=MARKER)
    return Features(x, y, path, from_cache=False)


def cache_files(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """The files damoxing wrote in the feature cache folder (see the module docstring), sorted by name."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.is_symlink() and (LEFTOVER.fullmatch(p.name) or _is_ours(p))
    )


def _is_ours(path: Path) -> bool:
    if not CACHE_FILE.fullmatch(path.name):
        return False
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}) == MARKER and set(f.keys()) <= {"x", "y"}
    except Exception:  # not a safetensors file: not ours  # noqa: BLE001
        return False


def clear_cache(cache_dir: str | os.PathLike | None = None) -> tuple[int, int]:
    """Delete the files damoxing wrote in the feature cache folder; (files deleted, bytes freed)."""
    files, freed = 0, 0
    for path in cache_files(cache_dir):
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        files, freed = files + 1, freed + size
    return files, freed


def fit_linear_head(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task: SupervisedTask,
    c: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> nn.Module:
    """Fit logistic (or ridge, for regression) regression on features and write it into model.head.

    The model's head must be a SequenceHead (`model.reset_head(num_labels, "sequence")` first).
    """
    from sklearn.linear_model import LogisticRegression, Ridge

    if task.linear_probe is None:
        raise ConfigError(
            f"finetune.method: 'features' fits a classifier on pooled sequence features, which the "
            f"{task.name} task has not; use head, lora or full."
        )
    linear = getattr(model.head, "classifier", None)
    if not isinstance(linear, nn.Linear):
        raise ConfigError("finetune.method: 'features' needs a sequence head; call model.reset_head(n, 'sequence').")
    X = x.double().numpy()
    has_bias = linear.bias is not None
    mean = X.mean(0) if has_bias else np.zeros(X.shape[1])
    std = X.std(0) + 1e-6 if has_bias else np.ones(X.shape[1])
    Z = (X - mean) / std
    if task.linear_probe == "ridge":
        reg = Ridge(alpha=1.0 / c, fit_intercept=has_bias).fit(Z, y.double().numpy())
        coef, intercept = np.atleast_2d(reg.coef_), np.atleast_1d(reg.intercept_)
    else:
        num_classes = linear.out_features
        clf = LogisticRegression(C=c, max_iter=max_iter, fit_intercept=has_bias, random_state=seed)
        clf.fit(Z, y.long().numpy())
        coef = np.zeros((num_classes, X.shape[1]))
        intercept = np.zeros(num_classes)
        seen = clf.classes_.astype(int)
        if len(seen) == 2:  # sklearn's binary form: one score; split it symmetrically into two logits
            coef[seen[0]], coef[seen[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
            intercept[seen[0]], intercept[seen[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
        else:
            coef[seen], intercept[seen] = clf.coef_, clf.intercept_
        unseen = [k for k in range(num_classes) if k not in seen]
        intercept[unseen] = -1e4 if has_bias else 0.0  # a class absent from training is never predicted
    weight = coef / std  # fold the standardisation: w.(x - m)/s + b = (w/s).x + (b - (w/s).m)
    bias = intercept - weight @ mean
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight).to(linear.weight.dtype))
        if has_bias:
            linear.bias.copy_(torch.from_numpy(bias).to(linear.bias.dtype))
    return model

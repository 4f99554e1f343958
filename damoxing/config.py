"""Configs: frozen dataclasses of plain types, read from YAML, changed by dotted overrides.

    cfg = build(RunConfig, load_yaml("damoxing/configs/gpt-mini-clm.yaml"), overrides=["train.lr=3e-4"])

Unknown keys are errors that name the key and suggest the nearest valid one; values are
coerced to the field's declared type, and each dataclass validates itself in __post_init__
with `check_*` helpers, whose messages name the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .atomic import atomic_open
from .errors import ConfigError


# ---------------------------------------------------------------- validation helpers
def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        near = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}.{near}")


def check_finite(key: str, value: float) -> None:
    """NaN and infinity are never a setting: a NaN learning rate trains nothing and reports nothing."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}.")


def check_positive(key: str, value: float, allow_zero: bool = False) -> None:
    check_finite(key, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}.")


def check_range(key: str, value: float, low: float, high: float) -> None:
    check_finite(key, value)
    if not (low <= value <= high):
        raise ConfigError(f"{key}: must be between {low} and {high}, got {value!r}.")


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


# ---------------------------------------------------------------- registry
class Registry:
    """Names -> objects (presets, model families, tasks). YAML names things; it never imports them."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None):
        def add(o):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str, key: str | None = None) -> Any:
        if name not in self._items:
            hint = difflib.get_close_matches(name, list(self._items), n=1)
            near = f" Did you mean {hint[0]!r}?" if hint else ""
            where = f"{key}: " if key else ""
            raise ConfigError(f"{where}unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}.{near}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


# ---------------------------------------------------------------- dict <-> dataclass
def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be {value!r}.")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {value!r}.")
        return from_dict(tp, value, prefix=key)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}.")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}.")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{key}: expected true or false, got {value!r}.")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    f = float(value)
                    if f.is_integer():
                        return int(f)
                except ValueError:
                    pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}.")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}.") from None
        check_finite(key, number)
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected text, got {value!r}.")
        return str(value)
    return value


# Names other tools (Hugging Face TrainingArguments, Lightning) give our run-config keys.
ALIASES = {
    "learning_rate": "train.lr",
    "num_train_epochs": "train.epochs",
    "max_epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size",
    "train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "accumulate_grad_batches": "train.grad_accum",
    "warmup_ratio": "train.warmup_ratio",
    "warmup_steps": "train.warmup_steps",
    "num_warmup_steps": "train.warmup_steps",
    "lr_scheduler_type": "train.schedule",
    "max_grad_norm": "train.clip_grad",
    "gradient_clip_val": "train.clip_grad",
    "weight_decay": "train.weight_decay",
    "adam_epsilon": "train.eps",
    "logging_steps": "train.log_every",
    "eval_steps": "train.eval_every",
    "save_steps": "train.save_every",
    "save_total_limit": "train.keep_last",
    "metric_for_best_model": "train.metric",
    "seed": "train.seed",
    "max_steps": "train.max_steps",
}


def _unknown_key(key: str, prefix: str, fields: list[str]) -> ConfigError:
    """The error for an unknown key: our name for a known alias, else the nearest valid key of the section."""
    full = f"{prefix}.{key}" if prefix else key
    ours = ALIASES.get(key)
    if ours is not None and ours != full:
        near = f" Did you mean '{ours}'? ({key!r} is another tool's name for it.)"
    else:
        hint = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
        near = f" Did you mean '{(prefix + '.') if prefix else ''}{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown key '{full}'.{near} Valid keys here: {', '.join(fields)}.")


def from_dict(cls, data: dict | None, prefix: str = ""):
    """Build dataclass `cls` from a plain dict; unknown keys are errors naming our key for it or the nearest one."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in fields:
            raise _unknown_key(k, prefix, list(fields))
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required key is missing
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from None


def to_dict(cfg) -> dict:
    """Plain dict (lists instead of tuples), ready for YAML or JSON."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


# ---------------------------------------------------------------- YAML and overrides
def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text.") from None
    except OSError as e:  # PermissionError, a folder, an I/O error
        raise ConfigError(
            f"{path}: cannot read the config ({e.strerror}); check that you may read it "
            "(ls -l, chmod a+r), or pass another file."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}.")
    return data


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply 'section.key=value' strings (a leading '--' is allowed); values are parsed as YAML scalars."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        item = item.removeprefix("--")
        if "=" not in item:
            raise ConfigError(f"override {item!r}: write it as section.key=value, e.g. --train.lr=3e-4.")
        dotted, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: '{p}' is a value, not a section.")
            else:
                child = node[p] = dict(child)
            node = child
        node[parts[-1]] = value
    return data


def save_yaml(data: dict, path: str | Path) -> None:
    with atomic_open(path) as f:
        yaml.safe_dump(data, f, sort_keys=False, allow_unicode=True)

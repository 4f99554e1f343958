"""Hugging Face <-> damoxing, one file per architecture (`bert.py`, `gpt2.py`, `llama.py`, `vit.py`, `t5.py`,
`marian.py`, `roformer.py`), each an `HFMap`.

Families transformers has no class for (`cnn.py`, `mlp.py`, ViTs without a class token) keep the folder
layout under damoxing's own model types (`native.py`).

    arch = architecture_of(config_json, source)        # the registered architecture a config.json names
    config, arch, labels = config_from_hf(config_json, source, keys)
    ours, unknown = state_from_hf(hf_state, arch, config)   # HF key names and layouts -> ours
    arch = architecture_for(our_config)                # the architecture a model is saved as
    hf_state = state_to_hf(our_state, arch, our_config); config_json = config_to_hf(our_config, labels, dtype)

A new architecture is one new file with a `MAP`, added to `MAPS` below: it registers its model type and
each of its head architectures; registering a name twice is an error.
"""

from __future__ import annotations

import torch

from ...config import Registry
from ...errors import CheckpointError
from . import bert, cnn, gpt2, llama, marian, mlp, roformer, t5, vit
from .base import HFMap, labels_of, rename, template

MODEL_TYPES = Registry("Hugging Face model type")  # model_type -> HFMap
ARCHITECTURES = Registry("Hugging Face architecture")  # architecture -> (HFMap, our head kind)
MAPS = (
    bert.MAP,
    roformer.MAP,
    gpt2.MAP,
    llama.MAP,
    t5.MAP,
    marian.MAP,
    vit.MAP,
    vit.NATIVE,
    cnn.MAP,
    mlp.MAP,
)  # the first that fits saves


def register(m: HFMap) -> None:
    MODEL_TYPES.register(m.model_type, m)
    for arch, (head, _) in m.heads.items():
        ARCHITECTURES.register(arch, (m, head))


for _map in MAPS:
    register(_map)


def _names() -> str:
    return ", ".join(ARCHITECTURES.names())


def architecture_of(cfg: dict, source) -> str:
    """The supported architecture config.json names (its `architectures`, else its `model_type`)."""
    archs = cfg.get("architectures") or []
    for arch in archs:
        if arch in ARCHITECTURES:
            return arch
    if not archs and cfg.get("model_type") in MODEL_TYPES:
        return MODEL_TYPES.get(cfg["model_type"]).base_architecture
    named = ", ".join(archs) or f"model_type {cfg.get('model_type')!r}"
    raise CheckpointError(f"{source}: unsupported architecture {named}; damoxing reads {_names()}")


def config_from_hf(cfg: dict, source, keys=()) -> tuple[object, str, list[str] | None]:
    """config.json dict -> (our config, architecture, label names or None); `keys`: the checkpoint's weights."""
    arch = architecture_of(cfg, source)
    m, head = ARCHITECTURES.get(arch)
    num_labels, names = labels_of(cfg)
    try:
        config = m.config_from_hf(cfg, head, num_labels, list(keys), source)
    except KeyError as e:
        raise CheckpointError(f"{source}: missing field {e.args[0]!r} needed for {arch}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid value for {arch} ({e})") from None
    return config, arch, names


def state_from_hf(state: dict, arch: str, config=None) -> tuple[dict, list[str]]:
    """HF state dict -> ours. The base model's keys may come with their prefix (`bert.`) or without.
    `config`: ours, from `config_from_hf` (RoFormer needs its head size to reorder the query and key rows).

    Returns (our state, HF keys that map to nothing and are not known buffers).
    """
    m, _ = ARCHITECTURES.get(arch)
    state = m.from_hf({k.removeprefix(m.prefix): v for k, v in state.items()}, config)
    ours, unknown = rename(state, m.weight_map(arch))
    return ours, [k for k in unknown if not m.ignored.search(k)]


def _save_prefix(m: HFMap, arch: str) -> str:
    return "" if arch == m.base_architecture else m.prefix


def hf_name(our_name: str, arch: str) -> str:
    """The HF key an internal name is stored under (for error messages)."""
    m, _ = ARCHITECTURES.get(arch)
    inverse = {v: k for k, v in m.weight_map(arch, _save_prefix(m, arch)).items()}
    tmpl, i = template(our_name)
    name = inverse.get(tmpl, our_name)
    return m.display(name.replace("{}", i) if i is not None else name)


def state_to_hf(state: dict, arch: str, config=None) -> dict:
    """Our state dict (tied copies already removed) -> HF names and layouts; `config`: the model's."""
    m, _ = ARCHITECTURES.get(arch)
    inverse = {v: k for k, v in m.weight_map(arch, _save_prefix(m, arch)).items()}
    out, unknown = rename({k: v for k, v in state.items() if m.keep_on_save(arch, k)}, inverse)
    if unknown:
        raise CheckpointError(f"cannot save as {arch}: no Hugging Face name for {', '.join(unknown[:5])}")
    return m.to_hf(out, config)


def stored(our_name: str, arch: str) -> bool:
    """Whether a checkpoint of `arch` holds this weight (BERT's token and MLM heads have no pooler)."""
    m, _ = ARCHITECTURES.get(arch)
    return m.keep_on_save(arch, our_name)


def architecture_for(config) -> str:
    """The HF architecture our config is saved as (raises CheckpointError when none fits)."""
    for m in MAPS:
        arch = m.architecture_for(config)
        if arch is not None:
            return arch
    shape = ", ".join(f"{k} {getattr(config, k)}" for k in ("position", "norm", "mlp") if hasattr(config, k))
    raise CheckpointError(
        f"cannot save in the Hugging Face layout: no architecture has {shape} "
        "(GPT-2: learned/layernorm/gelu; Llama: rope/rmsnorm/swiglu; BERT: an encoder; "
        "T5: relative positions; Marian: sinusoidal positions)"
    )


def config_to_hf(config, labels: list[str] | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """Our config -> config.json dict that transformers' AutoConfig reads."""
    arch = architecture_for(config)
    m, _ = ARCHITECTURES.get(arch)
    out = {
        "architectures": [arch],
        "model_type": m.model_type,
        **({"vocab_size": config.vocab_size} if hasattr(config, "vocab_size") else {}),
        "initializer_range": config.init_std,
        "dtype": str(dtype).removeprefix("torch."),
        **m.config_to_hf(config),
    }
    if config.head in ("sequence", "token"):
        n = config.num_labels
        names = labels if labels and len(labels) == n else [f"LABEL_{i}" for i in range(n)]
        out["id2label"] = {str(i): name for i, name in enumerate(names)}
        out["label2id"] = {name: i for i, name in enumerate(names)}
    return out


__all__ = [
    "ARCHITECTURES",
    "MODEL_TYPES",
    "HFMap",
    "architecture_for",
    "architecture_of",
    "config_from_hf",
    "config_to_hf",
    "hf_name",
    "register",
    "state_from_hf",
    "state_to_hf",
    "stored",
]

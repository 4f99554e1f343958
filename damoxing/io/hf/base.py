"""What every Hugging Face architecture map shares: the `HFMap` record and plain key renaming.

A map renames checkpoint keys through template dicts, HF name -> ours, where "{}" stands for the block
index. Loading renames the file's keys with it, saving renames ours back. Each architecture file
(`bert.py`, `gpt2.py`, `llama.py`, ...) is one `HFMap`: its key maps, its config translation both
ways, and the question "can this config be saved as one of my architectures?".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import CheckpointError

ACT_FROM_HF = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def _same(state: dict, config=None) -> dict:
    return state


@dataclass(frozen=True)
class HFMap:
    """One Hugging Face model type: weight maps, config translation, head architectures."""

    model_type: str  # config.json "model_type"
    prefix: str  # prefix of the base model's keys inside head models ("bert.")
    base: dict[str, str]  # base model keys, HF template -> ours
    heads: dict[str, tuple[str, dict[str, str]]]  # architecture -> (our head kind, the head's key map)
    config_from_hf: Callable  # (cfg dict, head kind, weight names, source) -> our config
    config_to_hf: Callable  # (our config) -> config.json fields of this model type
    architecture_for: Callable  # (our config) -> architecture name, or None when not this model type
    ignored: re.Pattern = re.compile(r"(?!)")  # keys that hold no weights of ours (buffers, tied copies)
    # (state, our config) -> state: key/tensor fix-ups before renaming (GPT-2 unfuses c_attn); to_hf: their
    # inverse, after renaming back
    from_hf: Callable[[dict, object], dict] = _same
    to_hf: Callable[[dict, object], dict] = _same
    keep_on_save: Callable[[str, str], bool] = lambda arch, name: True  # (architecture, our key): stored?
    display: Callable[[str], str] = lambda name: name  # an HF key as error messages show it
    base_architecture: str = field(default="")  # the head-less architecture, for config.json without one

    def weight_map(self, arch: str, prefix: str = "") -> dict[str, str]:
        """The full HF -> ours template map of one architecture; `prefix` goes before base-model keys."""
        return {**{prefix + k: v for k, v in self.base.items()}, **self.heads[arch][1]}


def template(name: str) -> tuple[str, str | None]:
    """'blocks.3.attn.q.weight' -> ('blocks.{}.attn.q.weight', '3')."""
    m = re.search(r"\.(\d+)\.", name)
    return (f"{name[: m.start()]}.{{}}.{name[m.end() :]}", m.group(1)) if m else (name, None)


# a quantized weight's companions are named after it (as compressed-tensors does): q.weight -> q.weight_scale
QUANTIZED_SUFFIXES = ("weight_scale", "weight_min")


def rename(state: dict, mapping: dict[str, str]) -> tuple[dict, list[str]]:
    """Rename keys through a template map; returns (renamed, keys it had no entry for).

    `X.weight_scale` and `X.weight_min` follow the name of `X.weight`.
    """
    out, unknown = {}, []
    for name, tensor in state.items():
        tmpl, i = template(name)
        stem, _, suffix = tmpl.rpartition(".")
        extra = ""
        if tmpl not in mapping and suffix in QUANTIZED_SUFFIXES and f"{stem}.weight" in mapping:
            tmpl, extra = f"{stem}.weight", suffix.removeprefix("weight")
        if tmpl in mapping:
            out[(mapping[tmpl].replace("{}", i) if i is not None else mapping[tmpl]) + extra] = tensor
        else:
            unknown.append(name)
    return out, unknown


def per_block(pairs, params=("weight", "bias"), hf_prefix: str = "", ours_prefix: str = "blocks.{}.") -> dict:
    """{hf_prefix + hf + '.' + p: ours_prefix + ours + '.' + p} for each (hf, ours) pair and parameter name."""
    return {f"{hf_prefix}{hf}.{p}": f"{ours_prefix}{ours}.{p}" for hf, ours in pairs for p in params}


def first(value):
    """config.json ids may be lists (several EOS tokens): keep the first."""
    return value[0] if isinstance(value, list) and value else value


def unless_equal(value, default):
    """None when `value` is missing or equals `default` (configs leave such fields at None)."""
    return None if value is None or value == default else value


def labels_of(cfg: dict) -> tuple[int, list[str] | None]:
    """(num_labels, label names or None) from id2label / num_labels."""
    id2label = cfg.get("id2label")
    if isinstance(id2label, dict) and id2label:
        names = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label))]
        return len(names), names
    return int(cfg.get("num_labels", 2)), None


def activation(cfg: dict, source, key: str = "hidden_act", default: str = "gelu") -> str:
    act = cfg.get(key, default)
    if act not in ACT_FROM_HF:
        unsupported(source, key, act, f"known: {', '.join(ACT_FROM_HF)}")
    return ACT_FROM_HF[act]


def layer_heads(c) -> dict:
    """Per-layer head counts of a head-pruned model: a key of ours, which transformers does not read."""
    return {"layer_heads": list(c.layer_heads)} if c.layer_heads else {}


def unsupported(source, key, value, why: str):
    raise CheckpointError(f"{source}: {key} = {value!r} is not supported ({why})")


def no_save(why: str):
    raise CheckpointError(f"cannot save in the Hugging Face layout: {why}")

"""ONNX export (torch.onnx.export, the dynamo exporter) with dynamic batch and sequence axes; onnxruntime runs it.

    export_onnx(model, "model.onnx")                   # encoders: input_ids, attention_mask (+ token_type_ids)
                                                       # decoders: input_ids, attention_mask -> logits (B, T, V)
    session = onnx_session("model.onnx")
    logits = run_onnx(session, {"input_ids": ids, "attention_mask": mask})
    tokens = greedy_onnx(session, prompt_ids, 64)      # greedy decoding, the whole sequence each step

    export_onnx(decoder, "model.onnx", kv_cache=True)  # + position_ids, past_key_values.{i}.key / .value in,
                                                       #   logits and present.{i}.key / .value out (as optimum)
    tokens = greedy_onnx_cached(onnx_session("model.onnx"), prompt_ids, 64)   # one new token per step

Without `kv_cache` a decoder step recomputes the whole prefix: correct and portable, but quadratic in length.
With it, the graph takes the keys and values of the positions seen so far, (B, kv_heads, past, head_dim) per
layer (past may be 0), and returns them with the new positions appended; the attention mask covers past and
new positions. Weights are stored inside the .onnx file (models under 2 GB). Quantized models are refused: export the float model, and quantize it with ONNX
Runtime's own tools, whose int8 operators its kernels run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .quantize import QuantizedLayer

ONNX_LIMIT = 2 * 1024**3  # a protobuf file holds at most 2 GB


class _EncoderInputs(nn.Module):
    """The encoder with a fixed ONNX signature: (input_ids, attention_mask[, token_type_ids]) -> head output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids, attention_mask, token_type_ids)


class _DecoderInputs(nn.Module):
    """The decoder with a fixed ONNX signature: (input_ids, attention_mask) -> logits, no cache."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: positions from the mask
        return self.model(input_ids, attention_mask, positions)


class _PastKV:
    """A LayerKV for export: past keys and values in, `update` appends the new ones (torch.cat) as `present`."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v  # (B, Hkv, P, d)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k, self.v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)  # (B, Hkv, P + T, d)
        return self.k, self.v


class _PastCache(list):
    """The _PastKV of every layer, with KVCache's `length` (the past positions, a symbolic size when traced) that
    the decoder reads: with a plain list, torch.export's non-strict capture (the exporter's first try) failed and
    it fell back to the strict one, which for SmolLM2-135M took 12 s more of a 62 s export."""

    @property
    def length(self):
        return self[0].k.shape[2]


class _DecoderWithPast(nn.Module):
    """The decoder with optimum's signature: (input_ids, attention_mask (B, P + T), position_ids, then each layer's
    past key and value) -> logits (B, T, V), then each layer's present key and value (B, Hkv, P + T, d)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        cache = _PastCache(_PastKV(past[i], past[i + 1]) for i in range(0, len(past), 2))
        logits = self.model(input_ids, attention_mask, position_ids, cache=cache)
        return (logits, *[t for layer in cache for t in (layer.k, layer.v)])


def past_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(kv_heads, head_dim) of each decoder layer's cache (layers may differ after head pruning)."""
    return [(block.attn.kv_heads, block.attn.head_dim) for block in model.blocks]


def past_names(model: nn.Module) -> list[str]:
    return [f"past_key_values.{i}.{kind}" for i in range(len(model.blocks)) for kind in ("key", "value")]


def present_names(model: nn.Module) -> list[str]:
    return [f"present.{i}.{kind}" for i in range(len(model.blocks)) for kind in ("key", "value")]


def input_names(model: nn.Module) -> list[str]:
    """The ONNX inputs of `model`: token_type_ids only for encoders with segment embeddings."""
    if hasattr(model, "new_cache"):  # a decoder
        return ["input_ids", "attention_mask"]
    segments = getattr(model.config, "type_vocab_size", 0)
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if segments else [])


def example_inputs(model: nn.Module, batch: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
    """Inputs to trace with: batch and length above 1, so that the exporter keeps both axes dynamic."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (batch, length), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return {k: inputs[k].to(model.device) for k in input_names(model)}


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int | None = None, kv_cache: bool = False) -> Path:
    """Write `model` (eval mode, float weights) to `path` as one ONNX file with dynamic batch and sequence axes;
    a decoder with `kv_cache` also takes and returns its keys and values (see the module docstring)."""
    if any(isinstance(m, QuantizedLayer) for m in model.modules()):
        raise ConfigError(
            "export: this model is quantized (damoxing's int8/int4 kernels have no ONNX operators); "
            "export the float model and quantize it with onnxruntime.quantization"
        )
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if size >= ONNX_LIMIT:
        raise ConfigError(f"export: {size / 1e9:.1f} GB of weights do not fit one ONNX file (2 GB)")
    model = model.eval()
    if kv_cache and not hasattr(model, "new_cache"):
        raise ConfigError("export: kv_cache is for decoders (GPT-2, Llama, ...); export encoders without it")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    if kv_cache:
        wrapper, inputs = _DecoderWithPast(model), _past_example(model)
        # batch, new length, past length and the mask's past + new: the exporter works out how they relate
        auto = torch.export.Dim.AUTO
        dynamic = [{0: auto, 1: auto}] * 3 + [tuple([{0: auto, 2: auto}] * (len(inputs) - 3))]  # *past: one argument
        outputs = ["logits", *present_names(model)]
    else:
        wrapper = (_DecoderInputs if hasattr(model, "new_cache") else _EncoderInputs)(model)
        inputs = example_inputs(model)
        dynamic, outputs = [{0: batch, 1: sequence} for _ in inputs], ["logits"]
    wrapper.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter logs every optional operator library it does not find
    try:
        torch.onnx.export(
            wrapper,
            tuple(inputs.values()),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=list(inputs),
            output_names=outputs,
            opset_version=opset,
            dynamic_shapes=tuple(dynamic),
            verbose=False,
        )
    finally:
        quiet.setLevel(level)
    return path


def _past_example(model: nn.Module, batch: int = 2, past: int = 3, length: int = 4) -> dict[str, torch.Tensor]:
    """Inputs to trace the cached decoder with: every axis above 1 and distinct, so that all stay dynamic."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, model.config.vocab_size, (batch, length), generator=g)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones(batch, past + length, dtype=torch.long),
        "position_ids": torch.arange(past, past + length).expand(batch, length),
    }
    dtype = next(model.parameters()).dtype
    for name, (heads, dim) in zip(past_names(model), [s for s in past_shapes(model) for _ in "kv"]):
        inputs[name] = torch.randn(batch, heads, past, dim, generator=g).to(dtype)
    return {k: v.to(model.device) for k, v in inputs.items()}


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime InferenceSession on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The session's first output for torch inputs (only the inputs the model declares are passed)."""
    wanted = {i.name for i in session.get_inputs()}
    feed = {k: v.cpu().numpy().astype(np.int64) for k, v in inputs.items() if k in wanted}
    return torch.from_numpy(session.run(None, feed)[0])


def greedy_onnx(session, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) prompt -> (B, steps) greedy tokens, running the exported decoder on the whole sequence each step."""
    ids, new = prompt, []
    for _ in range(steps):
        logits = run_onnx(session, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})  # (B, T, V)
        token = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        new.append(token)
        ids = torch.cat([ids, token], dim=1)
    return torch.cat(new, dim=1)


def greedy_onnx_cached(session, prompt: torch.Tensor, steps: int, attention_mask: torch.Tensor | None = None):
    """(B, T) prompt (left-padded where `attention_mask` says so) -> (B, steps) greedy tokens, with the graph
    exported with `kv_cache`: the prompt once from an empty past, then one token per step."""
    names = [i.name for i in session.get_inputs()]
    past = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
    if not past:
        raise ConfigError("greedy_onnx_cached: this graph has no past_key_values inputs; export it with kv_cache")
    B = prompt.shape[0]
    mask = (torch.ones_like(prompt) if attention_mask is None else attention_mask).numpy().astype(np.int64)
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}
    cache = [np.zeros((B, i.shape[1], 0, i.shape[3]), dtype=dtype[i.type]) for i in past]  # empty past
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)  # left padding: positions from the mask
    ids, new = prompt.numpy().astype(np.int64), []
    for _ in range(steps):
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **dict(zip(names[3:], cache))}
        logits, *cache = session.run(None, feed)  # (B, T, V), then the presents
        token = logits[:, -1].argmax(-1)[:, None]  # (B, 1)
        new.append(token)
        ids, positions = token, positions[:, -1:] + 1
        mask = np.concatenate([mask, np.ones((B, 1), dtype=np.int64)], axis=1)
    return torch.from_numpy(np.concatenate(new, axis=1))

"""ONNX export (torch.onnx.export, the dynamo exporter) with dynamic batch and sequence axes; onnxruntime runs it.

    export_onnx(model, "model.onnx")                   # encoders: input_ids, attention_mask (+ token_type_ids)
                                                       # decoders: input_ids, attention_mask -> logits (B, T, V)
    session = onnx_session("model.onnx")
    logits = run_onnx(session, {"input_ids": ids, "attention_mask": mask})
    tokens = greedy_onnx(session, prompt_ids, 64)      # greedy decoding, the whole sequence each step

Decoders are exported without a key/value cache: each step recomputes the whole prefix, which is correct
and portable but quadratic in length; exporting the cache as inputs and outputs is still to do (it waits
on the preallocated KVCache of damoxing/layers/attention.py). Weights are stored inside the .onnx file
(models under 2 GB). Quantized models are refused: export the float model, and quantize it with ONNX
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


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write `model` (eval mode, float weights) to `path` as one ONNX file with dynamic batch and sequence axes."""
    if any(isinstance(m, QuantizedLayer) for m in model.modules()):
        raise ConfigError(
            "export: this model is quantized (damoxing's int8/int4 kernels have no ONNX operators); "
            "export the float model and quantize it with onnxruntime.quantization"
        )
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if size >= ONNX_LIMIT:
        raise ConfigError(f"export: {size / 1e9:.1f} GB of weights do not fit one ONNX file (2 GB)")
    model = model.eval()
    wrapper = (_DecoderInputs if hasattr(model, "new_cache") else _EncoderInputs)(model)
    inputs = example_inputs(model)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
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
            output_names=["logits"],
            opset_version=opset,
            dynamic_shapes={k: {0: batch, 1: sequence} for k in inputs},
            verbose=False,
        )
    finally:
        quiet.setLevel(level)
    return path


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

"""`damoxing quantize | prune | export`: a saved model in, a lighter one out, with what changed.

    quantize_model("runs/bbc/model", "runs/bbc-int8", "dynamic")        # HF folder, or a .gguf file
    prune_model("runs/bbc/model", "runs/bbc-heads", heads=0.5, data="data/bbc_news/test.csv.gz")
    export_model("runs/bbc/model", "bbc.onnx")

A fine-tuned folder keeps its finetune.json, so `damoxing evaluate` and `predict` take the result as they
take the original. From a GGUF file, `quantize --method int8|int4` keeps the blocks that already have that
width (Q8_0 for int8; Q4_0, Q4_1 for int4) exactly as stored and re-quantizes the others from their float
values; the notes in config.json["quantization"] say which.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..atomic import atomic_open
from ..compress.export import example_inputs, export_onnx, greedy_onnx_cached, onnx_session, run_onnx
from ..compress.prune import head_importance, magnitude_prune, make_permanent, prune_heads, sparsity_of
from ..compress.quantize import Int4Linear, Int8Linear, QuantizedLayer, dequantize_layers, quantize
from ..errors import UserError
from ..evaluation.evaluate import evaluate_records
from ..inference import GenerationConfig, generate
from ..io.checkpoint import TOKENIZER_FILES, load_model, save_model
from ..io.finetuned import read_meta, save_finetuned
from ..tasks import chunks, get_task
from ..tokenizer import Tokenizer
from .evaluate import load_for_evaluation

BLOCK_WIDTH = {"int8": Int8Linear, "int4": Int4Linear}  # the GGUF block layers a method keeps as they are


def _tokenizer(src: Path):
    """The source's tokenizer, to save beside the result; None when it has none (a bare weights folder or GGUF)."""
    if src.suffix == ".gguf":
        try:
            return Tokenizer.load(src)
        except UserError as error:  # the model loaded, so only the tokenizer metadata is missing
            print(f"note: no tokenizer saved ({error})", file=sys.stderr)
            return None
    return Tokenizer.load(src) if any((src / name).is_file() for name in TOKENIZER_FILES) else None


def _save(model, tokenizer, src: Path, dst: Path) -> None:
    """As the source was saved: a fine-tuned folder with its finetune.json, else a plain model folder."""
    meta = read_meta(src) if src.is_dir() else {}
    if meta:
        save_finetuned(model, tokenizer, dst, {k: v for k, v in meta.items() if k != "pooling"})
    else:
        save_model(model, tokenizer, dst)


def size_of(path: Path) -> int:
    """Bytes of a model file, or of the weight files of a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) + sum(p.stat().st_size for p in path.glob("*.bin"))


# ---------------------------------------------------------------------- quantize
def quantize_model(src: str | os.PathLike, dst: str | os.PathLike, method: str, group_size: int | None = None) -> dict:
    """Load `src`, quantize it with `method` (int8 | int4 | dynamic), save to `dst`; returns a summary."""
    src, dst = Path(src), Path(dst)
    keep_blocks = src.suffix == ".gguf" and method in BLOCK_WIDTH
    model = load_model(src, quantized=keep_blocks)
    if not keep_blocks and any(isinstance(m, QuantizedLayer) for m in model.modules()):
        raise UserError(f"{src} is already quantized ({model.quantization.get('method')}); quantize the float model")
    if keep_blocks:  # blocks of the other width are re-quantized from their float values
        other = dequantize_layers(
            model, lambda n, m: isinstance(m, (Int8Linear, Int4Linear)) and not isinstance(m, BLOCK_WIDTH[method])
        )
        if other:
            model.quantization["notes"].append(
                f"{len(other)} layers of another width re-quantized to {method} "
                f"from their dequantized values: {', '.join(other[:3])}, ..."
            )
    section = quantize(model, method, group_size)
    _save(model, _tokenizer(src), src, dst)
    summary = {
        "source": str(src),
        "method": method,
        "layers": len(section["modules"]),
        "notes": section["notes"],
        "bytes_before": size_of(src),
        "bytes_after": size_of(dst),
    }
    summary["smaller"] = round(summary["bytes_before"] / max(1, summary["bytes_after"]), 2)
    return summary


# ---------------------------------------------------------------------- prune
LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def prune_model(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    heads: float | None = None,
    sparsity: float | None = None,
    data: str | os.PathLike | None = None,
    batch_size: int = 16,
    importance_examples: int = 256,
    levels: Sequence[float] = LEVELS,
) -> dict:
    """Prune `src` (a fraction of attention `heads`, or a weight `sparsity`), save to `dst`.

    With `data` (labelled records in the model's format, or texts for a language model), the model is also
    evaluated at each of `levels` (default 0 to 0.9) and the target: `dst`/prune-curve.json and prune-curve.png.
    Head pruning needs `data`: importance is measured on its first `importance_examples` records.
    """
    if (heads is None) == (sparsity is None):
        raise UserError("prune: give --heads FRACTION or --sparsity FRACTION (one of them)")
    if heads is not None and data is None:
        raise UserError("prune --heads ranks heads by their effect on the loss: give --data FILE with examples")
    src, dst = Path(src), Path(dst)
    model, tokenizer, meta = load_for_evaluation(src)
    task = get_task(meta["task"])
    records = None
    if data is not None:
        if not Path(data).exists():
            raise UserError(f"{data}: no such file or folder")
        records = list(task.read(Path(data), meta, labels=task.known_labels(meta["labels"])))
        if not records:
            raise UserError(f"{data}: no records")
    scores = None
    if heads is not None:
        batches = [
            task.encode(tokenizer, part, meta["max_length"])
            for part in chunks(records[:importance_examples], batch_size)
        ]
        scores = head_importance(model, batches, lambda m, b: sum(task.loss(m, b).losses.values()))

    def pruned(level: float):
        m = copy.deepcopy(model)
        if scores is not None:
            prune_heads(m, level, scores)
        else:
            magnitude_prune(m, level)
            make_permanent(m)
        return m.eval()

    target = heads if heads is not None else sparsity
    result = pruned(target)
    _save(result, tokenizer, src, dst)
    summary = {
        "source": str(src),
        "what": "heads" if heads is not None else "sparsity",
        "target": target,
        "parameters_before": model.num_parameters(),
        "parameters_after": result.num_parameters(),
        "layer_heads": list(result.config.layer_heads),
        "weight_sparsity": round(sparsity_of(result), 4),
    }
    if records is not None:
        metric = "accuracy" if meta["labels"] else "perplexity"
        curve = []
        for level in sorted(set(levels) | {target}):
            metrics = evaluate_records(
                pruned(level), tokenizer, task, records, meta["labels"], meta["max_length"], batch_size
            )
            curve.append({"level": level, metric: metrics[metric]})
        summary["curve"] = curve
        _plot_curve(curve, metric, summary["what"], dst / "prune-curve.png")
        with atomic_open(dst / "prune-curve.json") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return summary


def _plot_curve(curve: list[dict], metric: str, what: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([c["level"] for c in curve], [c[metric] for c in curve], marker="o")
    ax.set_xlabel("fraction of attention heads removed" if what == "heads" else "fraction of weights set to zero")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {'heads pruned' if what == 'heads' else 'sparsity'}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------- export
def export_model(
    src: str | os.PathLike, dst: str | os.PathLike, opset: int | None = None, kv_cache: bool = False
) -> dict:
    """`src` -> ONNX file `dst`; checks onnxruntime against PyTorch on two input shapes and reports the gap
    (with `kv_cache`: whether 8 greedy tokens through onnxruntime equal PyTorch's)."""
    model = load_model(src)
    path = export_onnx(model, dst, opset, kv_cache=kv_cache)
    session = onnx_session(path)
    if kv_cache:
        prompt = example_inputs(model, 2, 5)["input_ids"]
        tokens = greedy_onnx_cached(session, prompt, 8)
        same = torch.equal(tokens, generate(model, prompt, GenerationConfig(max_new_tokens=8))[:, 5:])
        return {
            "source": str(src),
            "onnx": str(path),
            "bytes": path.stat().st_size,
            "greedy_tokens_equal": same,
            "inputs": [i.name for i in session.get_inputs()],
        }
    gap = 0.0
    for batch, length in ((1, 5), (3, 11)):
        inputs = example_inputs(model, batch, length)
        with torch.no_grad():
            if hasattr(model, "new_cache"):
                positions = torch.arange(length).expand(batch, length)
                expected = model(inputs["input_ids"], inputs["attention_mask"], positions)
            else:
                expected = model(*inputs.values())
        gap = max(gap, float((run_onnx(session, inputs) - expected).abs().max()))
    return {
        "source": str(src),
        "onnx": str(path),
        "bytes": path.stat().st_size,
        "max_abs_difference": gap,
        "inputs": [i.name for i in session.get_inputs()],
    }

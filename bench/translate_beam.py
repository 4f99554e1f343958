"""Beam-search decoding speed: damoxing's seq2seq beam search vs transformers' `generate` on the same model.

The model is a translation run's folder (--model runs/translate-en-fr/model) or, without one, a fresh
transformer-small; transformers loads the same folder as a MarianMTModel. Both decode the same sources with
the same settings (beams, max_new_tokens, length penalty, forced end token, the pad token banned), and the
outputs are checked to be the same tokens. Timed runs alternate between the two; the best round counts.
Reported: sentences/s, generated tokens/s (of the returned translations) and the ratio.

    python bench/translate_beam.py --model runs/translate-en-fr/model --sentences 128 --beams 4
    python bench/translate_beam.py --quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from damoxing.inference import config as decoding
from damoxing.inference.seq2seq import generate_seq2seq
from damoxing.io.checkpoint import load_model, save_model
from damoxing.models import create_model, preset
from damoxing.tasks import get_task

DATA = Path(__file__).resolve().parents[1] / "damoxing" / "data" / "bundled" / "bible_en_fr" / "test.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="a seq2seq folder with tokenizer.json (default: fresh)")
    ap.add_argument("--sentences", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke test: 16 sentences, 16 new tokens, 1 round")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-beam"))
    ap.add_argument(
        "--tokenizer",
        type=Path,
        default=Path("runs/bench-translate/tokenizer"),
        help="without --model: the tokenizer of the fresh model (bench/translate_train.py makes it)",
    )
    a = ap.parse_args()
    if a.quick:
        a.sentences, a.batch, a.max_new_tokens, a.rounds = 16, 8, 16, 1
    from transformers import GenerationConfig, MarianMTModel

    from damoxing.tokenizer import Tokenizer

    if a.model is None:  # a fresh model: random weights decode to the length limit, the same work on both sides
        a.model = a.out / "fresh"
        tok_dir = a.tokenizer
        if not (tok_dir / "tokenizer.json").is_file():
            raise SystemExit(f"no --model and no tokenizer in {tok_dir}: run bench/translate_train.py --quick first")
        tok = Tokenizer.load(tok_dir)
        torch.manual_seed(0)
        cfg = preset(
            "transformer-small",
            vocab_size=tok.vocab_size,
            pad_id=tok.pad_id,
            eos_id=tok.eos_id,
            decoder_start_id=tok.pad_id,
        )
        save_model(create_model(cfg), tok, a.model)
    ours, tok = load_model(a.model), Tokenizer.load(a.model)
    theirs = MarianMTModel.from_pretrained(a.model, attn_implementation="sdpa").eval()
    c = ours.config
    settings = decoding.GenerationConfig(
        max_new_tokens=a.max_new_tokens, num_beams=a.beams, bad_token_ids=(c.pad_id,), forced_eos_token_id=c.eos_id
    )
    hf = GenerationConfig(
        max_new_tokens=a.max_new_tokens,
        num_beams=a.beams,
        do_sample=False,
        early_stopping=False,
        decoder_start_token_id=c.decoder_start_id,
        eos_token_id=c.eos_id,
        pad_token_id=c.pad_id,
        forced_eos_token_id=c.eos_id,
        bad_words_ids=[[c.pad_id]],
    )
    task = get_task("translation")
    sources = [r["source"] for r in task.read(DATA, {"source_column": "en", "target_column": "fr"})][: a.sentences]
    batches = [tok(sources[i : i + a.batch], max_length=128, truncation=True) for i in range(0, len(sources), a.batch)]

    def run_ours():
        return [generate_seq2seq(ours, b["input_ids"], b["attention_mask"], settings) for b in batches]

    def run_theirs():
        return [
            theirs.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], generation_config=hf)[:, 1:]
            for b in batches
        ]

    with torch.no_grad():
        mine, yours = run_ours(), run_theirs()  # warm-up, and the outputs to compare
        same = all(_trim(x, c.eos_id) == _trim(y, c.eos_id) for m, t in zip(mine, yours) for x, y in zip(m, t))
        tokens = sum(len(_trim(x, c.eos_id)) for m in mine for x in m)
        times = {"damoxing": [], "transformers": []}
        for _ in range(a.rounds):
            for name, run in (("damoxing", run_ours), ("transformers", run_theirs)):
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
    print(
        f"beam search, {a.beams} beams, {len(sources)} sentences in batches of {a.batch}, max {a.max_new_tokens} "
        f"new tokens, {torch.get_num_threads()} threads, model {a.model}; same tokens: {same}"
    )
    for name, ts in times.items():
        best = min(ts)
        print(f"  {name:12s} {len(sources) / best:7.1f} sentences/s  {tokens / best:8.0f} tokens/s  ({best:.2f} s)")
    print(f"  ratio        {min(times['transformers']) / min(times['damoxing']):.2f}x")


def _trim(row: torch.Tensor, eos: int) -> list[int]:
    row = row.tolist()
    return row[: row.index(eos) + 1] if eos in row else row


if __name__ == "__main__":
    main()

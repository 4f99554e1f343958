"""Stream a generated 1 GB text corpus through the reader and report peak memory (must stay under 300 MB).

    python bench/stream_memory.py                 # 1 GB plain text, documents separated by blank lines
    python bench/stream_memory.py --format jsonl --size-mb 200
    python bench/stream_memory.py --reader-only   # the reader alone (about 10 MB/s on one core)
    python bench/stream_memory.py --quick         # 20 MB: seconds

The corpus is written in a temporary folder from repeated chunks of the bundled Shakespeare (fast),
then read lazily with `read_records`, pushed through a 1000-document shuffle buffer, split into
whitespace "tokens" (hashed to ids) and packed into 1024-token blocks: the shape of a pretraining input
pipeline, minus the tokenizer. Peak RSS comes from `resource.getrusage`; it includes Python and
PyTorch themselves (about 220 MB after `import torch` on Linux), reported as the baseline.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from damoxing.data import buffer_shuffle, bundled_path, pack_documents, read_records

LIMIT_MB = 300
QUICK = {"size_mb": 20}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_corpus(path: Path, size_mb: int, fmt: str) -> int:
    """Write about `size_mb` MB of documents by repeating a chunk of paragraphs; returns bytes written."""
    with gzip.open(bundled_path("shakespeare") / "hamlet.txt.gz", "rt", encoding="utf-8") as f:
        paragraphs = [p.strip() for p in f.read().split("\n\n") if p.strip()]
    if fmt == "jsonl":
        chunk = "".join(json.dumps({"text": p}) + "\n" for p in paragraphs).encode()
    else:
        chunk = "\n\n".join(paragraphs).encode() + b"\n\n"
    target, written = size_mb * 1024 * 1024, 0
    with open(path, "wb") as out:
        while written < target:
            out.write(chunk)
            written += len(chunk)
    return written


def stream(path: Path, reader_only: bool = False) -> tuple[int, int, int]:
    """(documents, words, blocks) after reading, buffer-shuffling, word-splitting and packing the corpus."""
    counts = {"documents": 0, "words": 0}
    if reader_only:
        return sum(1 for _ in read_records(path)), 0, 0

    def documents():
        for record in buffer_shuffle(read_records(path), buffer_size=1000, seed=0):
            words = record["text"].split()
            counts["documents"] += 1
            counts["words"] += len(words)
            yield [hash(w) % 50_000 for w in words]

    n_blocks = sum(1 for _ in pack_documents(documents(), block_size=1024, eos_id=0))
    return counts["documents"], counts["words"], n_blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--format", choices=["txt", "jsonl"], default="txt")
    parser.add_argument("--reader-only", action="store_true", help="only read the records (no shuffle or packing)")
    parser.add_argument("--dir", default=None, help="where to write the corpus (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help=f"a short smoke run (make bench): {QUICK}")
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    baseline = peak_rss_mb()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / f"corpus.{args.format}"
        start = time.time()
        size = write_corpus(path, args.size_mb, args.format)
        print(f"wrote {size / 1e6:.0f} MB in {time.time() - start:.0f} s; peak RSS so far {peak_rss_mb():.0f} MB")
        start = time.time()
        documents, words, blocks = stream(path, args.reader_only)
        seconds = time.time() - start
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "bytes": size,
                "documents": documents,
                "words": words,
                "blocks": blocks,
                "seconds": round(seconds, 1),
                "mb_per_s": round(size / 1e6 / seconds, 1),
                "baseline_rss_mb": round(baseline, 1),
                "peak_rss_mb": round(peak, 1),
                "limit_mb": LIMIT_MB,
                "ok": peak < LIMIT_MB,
            }
        )
    )
    return 0 if peak < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())

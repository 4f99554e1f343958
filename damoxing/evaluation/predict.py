"""`damoxing predict --model DIR [TEXT ...] [--data FILE]`: labels with probabilities, streamed.

    for row in predict("runs/x/model", texts=["great phone", "broke in a day"]):
        print(row["label"], row["probability"])

Each prediction is a dict: classification {"text", "label", "probability", "probabilities": {name: p}},
regression {"text", "score"}, token classification {"tokens", "labels", "probabilities"}.
With `data`, the file is read lazily and predicted one batch at a time, and `write_jsonl` writes each
line as soon as its batch is done: a file of any length runs in flat memory.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import torch

from ..data.formats import strip_suffixes
from ..data.readers import TEXT_SUFFIXES, read_records
from ..errors import DataError, UserError
from ..finetune.encode import chunks, encode, model_inputs
from ..finetune.records import iter_token_records


def input_records(meta: dict, texts: Sequence[str] | None = None, data: str | os.PathLike | None = None,
                  skip_bad: bool = False) -> Iterator[dict]:
    """Unlabelled records from command-line texts or a file (lazily); a label column, if any, is ignored."""
    if (texts is None) == (data is None):
        raise UserError("give either texts or a data file to predict, not both")
    token_task = meta["task"] == "token"
    if texts is not None:
        if not texts:
            raise UserError("nothing to predict: give one or more texts, or --data FILE")
        return iter({"tokens": t.split()} if token_task else {"text": t} for t in texts)
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if token_task:
        return iter_token_records(path, tokens_column=meta["tokens_column"], with_tags=False, skip_bad=skip_bad)
    pair = meta.get("text_pair_column") or ""
    is_text = path.is_file() and strip_suffixes(path) in TEXT_SUFFIXES
    reader = read_records(path, text_column=meta["text_column"], text_pair_column=pair or None, skip_bad=skip_bad,
                          text_mode="line" if is_text else None)
    return iter(reader)


@torch.no_grad()
def predict_records(model, tokenizer, meta: dict, records: Iterable[dict], batch_size: int = 32) -> Iterator[dict]:
    """One prediction dict per record, in order, computed a batch at a time."""
    model.eval()
    task, names = meta["task"], list(meta["labels"])
    for batch_records in chunks(records, batch_size):
        batch = encode(tokenizer, batch_records, meta.get("max_length"), task)
        batch.pop("labels", None)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        hidden = model.forward_features(**model_inputs(model, batch))
        out = model.forward_head(hidden, batch.get("attention_mask")).float().cpu()
        if task == "regression":
            for record, score in zip(batch_records, out.squeeze(-1).tolist()):
                yield {**_text_of(record), "score": score}
        elif task == "token":
            yield from _token_rows(tokenizer, batch_records, out.softmax(-1), names, meta.get("max_length"))
        else:
            probs = out.softmax(-1)
            conf, best = probs.max(-1)
            for record, p, c, b in zip(batch_records, probs.tolist(), conf.tolist(), best.tolist()):
                yield {**_text_of(record), "label": names[b], "probability": c,
                       "probabilities": {n: round(v, 6) for n, v in zip(names, p)}}


def _text_of(record: dict) -> dict:
    return {k: record[k] for k in ("text", "text_a", "text_b") if k in record}


def _token_rows(tokenizer, records, probs, names, max_length) -> Iterator[dict]:
    """Per word: the prediction at its first sub-word (words cut off by max_length get no label)."""
    encodings = tokenizer.encode_words([r["tokens"] for r in records], max_length)
    for record, enc, p in zip(records, encodings, probs):
        first = {}
        for position, word in enumerate(enc.word_ids):
            if word is not None and word not in first:
                first[word] = position
        labels, confidence = [], []
        for w in range(len(record["tokens"])):
            if w in first:
                c, b = p[first[w]].max(-1)
                labels.append(names[int(b)])
                confidence.append(round(float(c), 6))
            else:
                labels.append(None)
                confidence.append(None)
        yield {"tokens": record["tokens"], "labels": labels, "probabilities": confidence}


def predict(model_dir: str | os.PathLike, texts: Sequence[str] | None = None, data: str | os.PathLike | None = None,
            *, batch_size: int = 32, skip_bad: bool = False, loaded=None) -> Iterator[dict]:
    """Predictions for `texts` or the records of `data`, lazily. `loaded` = (model, tokenizer, meta) to reuse."""
    from ..finetune.artifacts import load_finetuned

    model, tokenizer, meta = loaded if loaded is not None else load_finetuned(model_dir)
    return predict_records(model, tokenizer, meta, input_records(meta, texts, data, skip_bad), batch_size)


def write_jsonl(rows: Iterable[dict], out: IO[str]) -> int:
    """Write each row as one JSON line as soon as it arrives; returns the number of lines."""
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
        if n % 256 == 0:
            out.flush()
    out.flush()
    return n


def format_row(row: dict) -> str:
    """One human-readable line for a command-line text."""
    if "score" in row:
        return f"{row['score']:.4f}\t{row.get('text', '')}"
    if "tokens" in row:
        return " ".join(f"{t}/{label}" for t, label in zip(row["tokens"], row["labels"]))
    return f"{row['label']}\t{row['probability']:.4f}\t{row.get('text', row.get('text_a', ''))}"

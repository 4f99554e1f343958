"""`damoxing translate MODEL "text" ...` and `--data FILE`: an encoder-decoder folder -> translations.

    for row in translate("runs/translate-en-fr/model", texts=["In the beginning was the Word."], num_beams=4):
        print(row["translation"])

MODEL is any encoder-decoder folder damoxing loads (a `damoxing finetune` translation run's model/, or a
T5 folder with a tokenizer.json, or a Marian folder with its source.spm, target.spm and vocab.json). A file is read lazily (a table's source column, or a text
file with one source per line) and translated a batch at a time, so the JSON Lines come out as they are
made. Decoding settings: those saved with the model (finetune.json), then the ones given here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from ..errors import UserError
from ..inference.predict import predict_records
from ..io.checkpoint import load_model
from ..io.finetuned import read_meta
from ..models import family_of
from ..tasks import get_task
from ..tokenizer import Tokenizer
from .evaluate import input_records


def translate(
    model_dir: str | os.PathLike,
    texts: Sequence[str] | None = None,
    data: str | os.PathLike | None = None,
    *,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    length_penalty: float | None = None,
    max_length: int | None = None,
    source_column: str | None = None,
    batch_size: int = 32,
    skip_bad: bool = False,
) -> Iterator[dict]:
    """Rows {"source", "translation"}, lazily and in order (a target column in the file is not read)."""
    model, tokenizer = load_model(model_dir), Tokenizer.load(model_dir)
    if family_of(model.config) != "seq2seq" or model.config.head != "lm":
        raise UserError(
            f"{model_dir}: translating needs an encoder-decoder model with a language-model head "
            f"(T5, Marian, or a damoxing translation run), not a {family_of(model.config)} with a "
            f"{model.config.head!r} head"
        )
    meta = {"max_length": tokenizer.model_max_length or 512, **read_meta(model_dir)}
    given = {
        "num_beams": num_beams,
        "max_new_tokens": max_new_tokens,
        "length_penalty": length_penalty,
        "max_length": max_length,
        "source_column": source_column,
    }
    meta.update({k: v for k, v in given.items() if v is not None})
    task = get_task(meta.get("task", "translation")).configure(meta)
    records = input_records(task, meta, texts, data, skip_bad)
    return predict_records(model, tokenizer, task, records, [], meta["max_length"], batch_size)

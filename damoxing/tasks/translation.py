"""`translation` (and any other text-to-text task): `{"source", "target"}` records for encoder-decoder models.

Training is teacher forcing: the decoder reads the target shifted right behind the start token and is
scored on every target token (cross-entropy with optional label smoothing). Evaluation decodes the sources
(greedy or beam search, inference/seq2seq.py) and scores the translations against the references with
sacreBLEU's BLEU and chrF (their signatures in the report), beside the teacher-forced loss.

    data:      train / valid / test: a table with data.source_column and data.target_column
               (.jsonl .csv .tsv .parquet), or line-aligned text files in pairs: [train.en, train.fr]
    finetune:  task: translation, label_smoothing: 0.1, num_beams: 4, max_new_tokens: 128
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Sequence

import torch

from ..data.collators import Seq2SeqCollator
from ..data.parallel import read_parallel
from ..evaluation.metrics import TranslationMetrics
from ..inference.config import GenerationConfig
from ..inference.seq2seq import DEFAULTS, decode_outputs, generate_seq2seq
from ..layers.losses import IGNORE_INDEX
from .base import SupervisedTask, TaskOutput, target_loss

SETTINGS = ("num_beams", "max_new_tokens", "length_penalty")  # kept in finetune.json for evaluate and predict


class Translation(SupervisedTask):
    name = "translation"
    head = "lm"
    family = "seq2seq"
    finetune = True
    metric = ("loss", "min")
    label_smoothing = 0.0
    generation = DEFAULTS

    def configure(self, options: dict) -> Translation:
        task = copy.copy(self)
        task.label_smoothing = float(options.get("label_smoothing", 0.0))
        task.generation = dataclasses.replace(DEFAULTS, **{k: options[k] for k in SETTINGS if k in options})
        return task

    def settings(self) -> dict:
        return {k: getattr(self.generation, k) for k in SETTINGS}

    # ----- records
    def read(
        self, paths, columns: dict, labels=None, skip_bad: bool = False, with_labels: bool = True, summary=None
    ) -> Iterator[dict]:
        return read_parallel(
            paths,
            columns.get("source_column") or "source",
            columns.get("target_column") or "target",
            skip_bad=skip_bad,
            with_target=with_labels,
        )

    def label_map(self, records: list[dict]) -> tuple[list[dict], None]:
        return records, None

    def known_labels(self, names) -> None:
        return None

    def num_outputs(self, labels) -> int:
        return 1  # the output is the vocabulary: an encoder-decoder keeps its LM head (Seq2Seq.reset_head)

    def inputs(self, texts: Sequence[str]) -> Iterator[dict]:
        return iter({"source": t} for t in texts)

    def corpus(self, records: Iterable[dict]) -> Iterator[str]:
        """Both sides: a tokenizer trained on them has one joint vocabulary."""
        for r in records:
            yield r["source"]
            if "target" in r:
                yield r["target"]

    # ----- batches
    def examples(self, tokenizer, records: Sequence[dict], max_length: int | None) -> list[dict]:
        """Token ids of each source and target, the end token appended, cut to max_length. Targets go through the
        tokenizer's target side (Marian's target.spm; one joint vocabulary otherwise)."""
        encode = lambda side, texts: side(
            texts, max_length=max_length, padding=False, truncation=True, return_tensors=None
        )["input_ids"]
        sources = encode(tokenizer, [r["source"] for r in records])
        if not records or "target" not in records[0]:
            return [{"input_ids": s} for s in sources]
        targets = encode(tokenizer.target_side, [r["target"] for r in records])
        return [{"input_ids": s, "labels": t} for s, t in zip(sources, targets)]

    def collate(self, tokenizer, training: bool = True):
        return Seq2SeqCollator(tokenizer.pad_id, decoder_start_id=tokenizer.pad_id)  # T5 and Marian start with pad

    def encode(self, tokenizer, records: Sequence[dict], max_length: int | None) -> dict[str, torch.Tensor]:
        batch = self.collate(tokenizer)(self.examples(tokenizer, records, max_length))
        if "labels" in batch:
            batch["target_ids"] = batch["labels"]  # `labels` is taken out before `outputs`; this stays for the loss
        return batch

    # ----- training
    def loss(self, model, batch: dict) -> TaskOutput:
        return target_loss(model, batch, self.label_smoothing)

    def items(self, batch: dict) -> int:
        """Source tokens plus target tokens."""
        return int(batch["attention_mask"].sum()) + int((batch["labels"] != IGNORE_INDEX).sum())

    # ----- evaluation and prediction
    def decoding(self, model) -> GenerationConfig:
        """The run's decoding settings with the model's own rules: never its pad token, end by the last step."""
        c = model.config
        return dataclasses.replace(
            self.generation, bad_token_ids=(c.pad_id,) if c.pad_id != c.eos_id else (), forced_eos_token_id=c.eos_id
        )

    def outputs(self, model, batch: dict) -> dict:
        """Generated ids (B, L), and with targets the teacher-forced loss summed over their tokens."""
        out = {"ids": generate_seq2seq(model, batch["input_ids"], batch["attention_mask"], self.decoding(model))}
        if "target_ids" in batch:
            forced = target_loss(model, {**batch, "labels": batch["target_ids"]})
            out.update(loss=float(forced.losses["loss"]), tokens=int((batch["target_ids"] != IGNORE_INDEX).sum()))
        return out

    def metrics(self, names, worst_k: int = 20, tokenizer=None) -> TranslationMetrics:
        return TranslationMetrics(tokenizer=tokenizer)

    def score(self, metrics, outputs: dict, labels, records) -> tuple[float, int]:
        metrics.update(
            decode_outputs(metrics.tokenizer, outputs["ids"], self.generation),
            [r["target"] for r in records],
            [r["source"] for r in records],
        )
        return outputs["loss"], outputs["tokens"]

    def rows(self, tokenizer, records, outputs: dict, names, max_length) -> Iterator[dict]:
        for record, text in zip(records, decode_outputs(tokenizer, outputs["ids"], self.generation)):
            yield {
                "source": record["source"],
                "translation": text,
                **({"reference": record["target"]} if "target" in record else {}),
            }

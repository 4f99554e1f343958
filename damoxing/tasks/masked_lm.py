"""`mlm_nsp` (BERT pretraining: masked LM + next-sentence prediction) and `masked_lm` (masked LM only).

Records are documents of text. `prepare` splits them into sentences, tokenises them, groups consecutive
sentences into chunks, and returns chunk indices with a collator that pairs, masks and pads them per
row (one random generator per row: resume and DDP stay exact).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.collators import MLMChunkCollator, MLMCollator, segment_chunks
from ..data.sentences import split_sentences
from ..data.word_boundaries import continued_flags
from ..errors import ConfigError
from ..layers.losses import IGNORE_INDEX, wide
from .base import Task, TaskOutput, accuracy


class MaskedLM(Task):
    name = "masked_lm"
    head = "mlm"
    family = "encoder"
    pretraining = True
    perplexity = "mlm"
    nsp = False

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"mlm": (batch["labels"] != IGNORE_INDEX).sum()}

    def hidden(self, model, batch: dict) -> torch.Tensor:
        return model.forward_features(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))

    def masked_lm(self, model, batch: dict, hidden: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """Vocabulary projection only at the masked positions: (N_masked, C) -> (N_masked, V)."""
        where = batch["labels"] != IGNORE_INDEX  # (B, T)
        head = getattr(model.head, "mlm", model.head)
        logits = wide(head(hidden[where]))  # (N, V)
        y = batch["labels"][where]
        return F.cross_entropy(logits, y, reduction="sum"), accuracy(logits, y)

    def loss(self, model, batch: dict) -> TaskOutput:
        loss, acc = self.masked_lm(model, batch, self.hidden(model, batch))
        return TaskOutput({"mlm": loss}, {"mlm_acc": acc})

    # ----- pretraining data
    def head_fraction(self, data) -> float:
        """Share of positions that reach the vocabulary projection (for the FLOP count)."""
        return data.mask_prob

    def prepare(self, tokenizer, docs: list[str], run) -> tuple[list[int], MLMChunkCollator]:
        """Documents -> (chunk indices, collator) for `Batches`; `run` is the pretraining RunConfig."""
        sentences = [split_sentences(doc) for doc in docs]
        flat = tokenizer(
            [s for doc in sentences for s in doc],
            add_special_tokens=False,
            padding=False,
            truncation=False,
            return_tensors=None,
        )["input_ids"]
        it = iter(flat)
        per_doc = [[next(it) for _ in doc] for doc in sentences]
        seq_len = run.data.seq_len
        longest = (seq_len - 3) // 2 if self.nsp else seq_len - 2
        chunks, nxt = segment_chunks(per_doc, longest)
        continued = None
        if run.data.whole_word and run.data.word_segmenter:  # words from a segmenter (jieba), chunked alike
            flags = iter(continued_flags(run.data.word_segmenter, tokenizer, [s for doc in sentences for s in doc]))
            continued, _ = segment_chunks([[next(flags) for _ in doc] for doc in sentences], longest)
            continued = [bytes(c) for c in continued]  # one byte per token
        return list(range(len(chunks))), self.collator(chunks, nxt, tokenizer, run, continued)

    def collator(self, chunks, nxt, tok, run, continued=None) -> MLMChunkCollator:
        if tok.mask_id is None or tok.cls_id is None or tok.sep_id is None:
            raise ConfigError(
                "tokenizer: masked-LM pretraining needs [MASK], [CLS] and [SEP] tokens (a WordPiece "
                "tokenizer: tokenizer.kind=wordpiece)."
            )
        vocab = tok.vocab_size
        continuation = None
        if run.data.whole_word:
            continuation = torch.tensor([(tok.id_to_token(i) or "").startswith("##") for i in range(vocab)])
        mlm = MLMCollator(
            vocab,
            tok.mask_id,
            tok.pad_id if tok.pad_id is not None else 0,
            special_ids=[i for i in tok.special_ids if i is not None],
            continuation=continuation,
            mlm_probability=run.data.mask_prob,
            seed=run.train.seed,
            at_least_one=True,
        )
        return MLMChunkCollator(
            chunks,
            nxt,
            mlm,
            seq_len=run.data.seq_len,
            cls_id=tok.cls_id,
            sep_id=tok.sep_id,
            nsp=self.nsp,
            nsp_prob=run.data.nsp_prob,
            continued=continued,
        )


class MaskedLMNextSentence(MaskedLM):
    name = "mlm_nsp"
    head = "pretraining"
    nsp = True

    def targets(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"mlm": (batch["labels"] != IGNORE_INDEX).sum(), "nsp": torch.tensor(len(batch["next_sentence_label"]))}

    def loss(self, model, batch: dict) -> TaskOutput:
        """model.head is a PretrainingHead: `mlm` over masked positions, `nsp` over the pooled [CLS]."""
        hidden = self.hidden(model, batch)  # (B, T, C)
        mlm_loss, mlm_acc = self.masked_lm(model, batch, hidden)
        nsp_logits = wide(model.head.nsp(model.pool(hidden, batch.get("attention_mask"))))  # (B, 2)
        y = batch["next_sentence_label"]
        nsp_loss = F.cross_entropy(nsp_logits, y, reduction="sum")
        return TaskOutput({"mlm": mlm_loss, "nsp": nsp_loss}, {"mlm_acc": mlm_acc, "nsp_acc": accuracy(nsp_logits, y)})

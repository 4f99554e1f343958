"""`damoxing pretrain CONFIG.yaml`: config -> tokenizer -> data -> model -> Trainer.fit().

    damoxing pretrain configs/gpt-mini-clm.yaml --out runs/gpt --train.max_steps=200
    torchrun --nproc-per-node 2 -m damoxing pretrain configs/bert-mini-mlm-nsp.yaml

Tasks: `mlm_nsp` and `mlm` train an encoder (preset bert-*), `clm` a decoder (gpt-*, llama-*).
The tokenizer is loaded (`tokenizer.path`) or trained on data.train first (`tokenizer.train: true`) and
saved to RUN/tokenizer/; a resumed run reuses that one.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from ..config import to_dict
from ..data.collators import MLMCollator, pack_documents
from ..errors import ConfigError, DataError
from ..models import EncoderConfig, create_model, family_of, model_config
from . import distributed
from .batches import Batches, MLMChunkCollator, collate_clm, segment_chunks
from .config import RunConfig, load_run_config
from .flops import flops_per_token
from .trainer import Trainer

ENCODER_TASKS = {"mlm_nsp": "pretraining", "mlm": "mlm"}
DECODER_TASKS = {"clm": "lm"}


def pretrain(config_path: str | Path, out: str | Path | None = None, resume: bool = False,
             overrides: list[str] = ()) -> dict:
    run = load_run_config(config_path, overrides)
    c = run.train
    if c.task not in ENCODER_TASKS and c.task not in DECODER_TASKS:
        raise ConfigError(f"train.task: pretraining knows {', '.join([*ENCODER_TASKS, *DECODER_TASKS])}, "
                          f"not {c.task!r}.")
    model_config(run.model)  # a wrong model section fails now, before any tokenizer training
    run_dir = Path(out) if out else Path("runs") / Path(config_path).stem
    resume = resume or c.resume == "auto"
    d = distributed.setup()
    try:
        tok = prepare_tokenizer(run, run_dir, resume, d)
        model_cfg = resolve_model(run, tok)
        torch.manual_seed(c.seed)
        model = create_model(model_cfg)
        train_data, eval_data = build_batches(run, tok, d)
        resolved = {**to_dict(run), "model": {"family": family_of(model_cfg), **to_dict(model_cfg)}}
        if d.main:
            n = sum(p.numel() for p in model.parameters())
            print(f"{c.task}: {n / 1e6:.2f}M parameters, vocabulary {tok.vocab_size}, "
                  f"{len(train_data)} batches of {c.batch_size} per epoch and rank; run folder {run_dir}", flush=True)
        mask_rows = run.data.mask_prob if c.task in ENCODER_TASKS else 1.0
        trainer = Trainer(model, c.task, train_data, c, run_dir, eval_data=eval_data, tokenizer=tok,
                          run_config=resolved, dist=d, flops_per_token=flops_per_token(model, run.data.seq_len, mask_rows))
        result = trainer.fit(resume=resume)
        if d.main:
            final = result["eval"] or {}
            print(f"done: step {result['step']}, eval loss {final.get('loss', float('nan')):.4f}; "
                  f"checkpoints in {run_dir}", flush=True)
        return result
    finally:
        distributed.teardown()


# ---------------------------------------------------------------------- the pieces
def prepare_tokenizer(run: RunConfig, run_dir: Path, resume: bool, d):
    from ..tokenizer import Tokenizer

    t, saved = run.tokenizer, run_dir / "tokenizer"
    if t.path:
        return Tokenizer.load(t.path)
    if not (resume and (saved / "tokenizer.json").is_file()):
        if d.main:
            with tempfile.TemporaryDirectory() as tmp:  # the trainer reads plain files; our data may be gzipped
                corpus = Path(tmp) / "corpus.txt"
                corpus.write_text("\n".join(read_documents(run.data.train, run)), encoding="utf-8")
                if t.kind == "wordpiece":
                    tok = Tokenizer.train_wordpiece([corpus], vocab_size=t.vocab_size, lowercase=t.lowercase)
                else:
                    tok = Tokenizer.train_bpe([corpus], vocab_size=t.vocab_size)
            tok.save(saved)
        distributed.barrier(d)
    return Tokenizer.load(saved)


def resolve_model(run: RunConfig, tok):
    task, section = run.train.task, dict(run.model)
    cfg = model_config(section)
    encoder = isinstance(cfg, EncoderConfig)
    if encoder != (task in ENCODER_TASKS):
        wants = "an encoder (preset bert-*)" if task in ENCODER_TASKS else "a decoder (preset gpt-* or llama-*)"
        raise ConfigError(f"model: train.task {task!r} needs {wants}, but the model is a {family_of(cfg)}.")
    if "vocab_size" in section and section["vocab_size"] < tok.vocab_size:
        raise ConfigError(f"model.vocab_size: {section['vocab_size']} is smaller than the tokenizer's "
                          f"vocabulary ({tok.vocab_size}).")
    changes = {"vocab_size": section.get("vocab_size", tok.vocab_size)}
    if encoder:
        changes.update(head=ENCODER_TASKS[task], pad_id=tok.pad_id if tok.pad_id is not None else 0)
    else:
        changes.update(head="lm", eos_id=tok.eos_id, bos_id=tok.bos_id, pad_id=tok.pad_id)
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.max_positions < run.data.seq_len:
        raise ConfigError(f"data.seq_len: {run.data.seq_len} is longer than model.max_positions ({cfg.max_positions}).")
    return cfg


def read_documents(paths, run: RunConfig) -> list[str]:
    from ..data.readers import read_texts

    docs = [t for t in read_texts(list(paths), text_column=run.data.text_column, text_mode=run.data.text_mode)
            if t.strip()]
    if not docs:
        raise DataError(f"{', '.join(paths)}: no text found")
    return docs


def _encode(tok, texts: list[str]) -> list[list[int]]:
    return tok(texts, add_special_tokens=False, padding=False, truncation=False, return_tensors=None)["input_ids"]


def build_batches(run: RunConfig, tok, d) -> tuple[Batches, Batches | None]:
    """Pre-tokenised examples (CLM: packed blocks; MLM: sentence chunks), a held-out part, batch sources."""
    from ..data.splits import train_val_split

    c, data = run.train, run.data

    def examples(paths):
        docs = read_documents(paths, run)
        if c.task == "clm":
            if tok.eos_id is None:
                raise ConfigError("tokenizer: causal-LM pretraining needs an end-of-text token (eos).")
            return [{k: torch.tensor(v, dtype=torch.long) for k, v in block.items()}
                    for block in pack_documents(_encode(tok, docs), data.seq_len, tok.eos_id)]
        from ..data.sentences import split_sentences

        sentences = [split_sentences(doc) for doc in docs]
        flat = _encode(tok, [s for doc in sentences for s in doc])
        it = iter(flat)
        per_doc = [[next(it) for _ in doc] for doc in sentences]
        span = (data.seq_len - 3) // 2 if c.task == "mlm_nsp" else data.seq_len - 2
        return segment_chunks(per_doc, span)

    train, held = examples(data.train), None
    if data.eval:
        held = examples(data.eval)
    if c.task == "clm":
        collate_train = collate_eval = collate_clm()
        if held is None and data.eval_fraction > 0:
            train, held = train_val_split(train, data.eval_fraction, seed=c.seed)
    else:
        collate_train = _mlm_collator(train, tok, run)
        train = list(range(len(train[0])))
        if held is not None:
            collate_eval, held = _mlm_collator(held, tok, run), list(range(len(held[0])))
        else:
            collate_eval = collate_train
            if data.eval_fraction > 0:
                train, held = train_val_split(train, data.eval_fraction, seed=c.seed)
    make = lambda xs, collate, shuffle, drop: Batches(  # noqa: E731
        xs, collate, c.batch_size, seed=c.seed, shuffle=shuffle, drop_last=drop, rank=d.rank, world=d.world)
    train_batches = make(train, collate_train, data.shuffle, True)
    eval_batches = make(held, collate_eval, False, False) if held else None
    if len(train_batches) == 0:
        raise DataError(f"data.train: {len(train)} examples of {data.seq_len} tokens are fewer than one batch "
                        f"({c.batch_size} x {d.world} processes); add data or lower train.batch_size")
    return train_batches, eval_batches


def _mlm_collator(chunks_and_next, tok, run: RunConfig) -> MLMChunkCollator:
    chunks, nxt = chunks_and_next
    if tok.mask_id is None or tok.cls_id is None or tok.sep_id is None:
        raise ConfigError("tokenizer: masked-LM pretraining needs [MASK], [CLS] and [SEP] tokens (a WordPiece "
                          "tokenizer: tokenizer.kind=wordpiece).")
    vocab = tok.vocab_size
    continuation = None
    if run.data.whole_word:
        continuation = torch.tensor([(tok.id_to_token(i) or "").startswith("##") for i in range(vocab)])
    mlm = MLMCollator(vocab, tok.mask_id, tok.pad_id if tok.pad_id is not None else 0,
                      special_ids=[i for i in tok.special_ids if i is not None], continuation=continuation,
                      mlm_probability=run.data.mask_prob, seed=run.train.seed, at_least_one=True)
    return MLMChunkCollator(chunks, nxt, mlm, seq_len=run.data.seq_len, cls_id=tok.cls_id, sep_id=tok.sep_id,
                            nsp=run.train.task == "mlm_nsp", nsp_prob=run.data.nsp_prob)

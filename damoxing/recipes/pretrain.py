"""`damoxing pretrain CONFIG.yaml`: config -> tokenizer -> data -> model -> Trainer.fit().

    damoxing pretrain damoxing/configs/gpt-mini-clm.yaml --out runs/gpt --train.max_steps=200
    torchrun --nproc-per-node 2 -m damoxing pretrain damoxing/configs/bert-mini-mlm-nsp.yaml

Tasks: `mlm_nsp` and `masked_lm` train an encoder (preset bert-*), `clm` a decoder (gpt-*, llama-*),
`span_corruption` an encoder-decoder (t5-*, transformer-*, marian-*; a tokenizer with sentinels: kind
unigram, extra_ids 100); each task prepares its own examples and collator (tasks/*.py).
The tokenizer is loaded (`tokenizer.path`) or trained on data.train first (`tokenizer.train: true`) and
saved to RUN/tokenizer/. A resumed run takes the tokenizer saved in its checkpoint, the one its model was
trained with, and says so if the config asks for another.

Before any work the run folder is checked (a file, or a folder no run wrote, needs --force), locked
against a second run, cleared of what a killed run left, and a fresh run refuses one that holds
checkpoints (see damoxing/training/state.py).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from ..config import load_yaml, to_dict
from ..data.readers import read_records
from ..data.splits import train_val_split
from ..errors import ConfigError, DataError, UserError
from ..io.checkpoint import load_into, save_model
from ..models import EncoderConfig, Seq2SeqConfig, create_model, family_of, model_config
from ..tasks import TASKS, Task, get_task
from ..tokenizer import Tokenizer
from ..training import distributed, state
from ..training.batches import Batches
from ..training.config import RunConfig, load_run_config
from ..training.flops import flops_per_token
from ..training.trainer import Trainer


def pretraining_task(name: str) -> Task:
    task = get_task(name, key="train.task")
    if not task.pretraining:
        known = ", ".join(n for n in TASKS.names() if TASKS.get(n).pretraining)
        raise ConfigError(f"train.task: pretraining knows {known}, not {name!r}.")
    return task


def pretrain(
    config_path: str | Path,
    out: str | Path | None = None,
    resume: bool = False,
    overrides: list[str] = (),
    force: bool = False,
) -> dict:
    run = load_run_config(config_path, overrides)
    c = run.train
    task = pretraining_task(c.task)
    model_config(run.model)  # a wrong model section fails now, before any tokenizer training
    run_dir = Path(out) if out else Path("runs") / Path(config_path).stem
    resume = resume or c.resume == "auto"
    d = distributed.setup()
    try:
        with state.run_folder(run_dir, d, force=force):
            if not resume:
                state.refuse_earlier_run(run_dir)
            return _pretrain(run, task, run_dir, resume, d)
    finally:
        distributed.teardown()


def _pretrain(run: RunConfig, task: Task, run_dir: Path, resume: bool, d) -> dict:
    """tokenizer -> model -> batches -> Trainer.fit(), in a run folder this process holds."""
    c = run.train
    tok = prepare_tokenizer(run, run_dir, resume, d)
    model_cfg = resolve_model(run, task, tok)
    torch.manual_seed(c.seed)
    model = create_model(model_cfg)
    train_data, eval_data = build_batches(run, task, tok, d)
    resolved = {**to_dict(run), "model": {"family": family_of(model_cfg), **to_dict(model_cfg)}}
    if d.main:
        n = sum(p.numel() for p in model.parameters())
        print(
            f"{task.name}: {n / 1e6:.2f}M parameters, vocabulary {tok.vocab_size}, "
            f"{len(train_data)} batches of {c.batch_size} per epoch and rank; run folder {run_dir}",
            flush=True,
        )
    flops = flops_per_token(model, run.data.seq_len, task.head_fraction(run.data))
    trainer = Trainer(
        model,
        task,
        train_data,
        c,
        run_dir,
        eval_data=eval_data,
        run_config=resolved,
        dist=d,
        save=lambda m, folder: save_model(m, tok, folder),
        load=load_into,
        flops_per_token=flops,
    )
    result = trainer.fit(resume=resume)
    if d.main:
        final = result["eval"] or {}
        print(
            f"done: step {result['step']}, eval loss {final.get('loss', float('nan')):.4f}; checkpoints in {run_dir}",
            flush=True,
        )
    return result


# ---------------------------------------------------------------------- the pieces
def prepare_tokenizer(run: RunConfig, run_dir: Path, resume: bool, d) -> Tokenizer:
    """A resumed run: the tokenizer of its newest checkpoint. Otherwise tokenizer.path, or one trained on
    data.train and saved to RUN/tokenizer/ (reused by a run resumed before its first checkpoint)."""
    t, saved = run.tokenizer, run_dir / "tokenizer"
    if resume and (tok := checkpoint_tokenizer(run, run_dir, d)) is not None:
        return tok
    if t.path:
        return Tokenizer.load(t.path)
    if not (resume and (saved / "tokenizer.json").is_file()):
        if d.main:
            with tempfile.TemporaryDirectory() as tmp:  # the trainer reads plain files; our data may be gzipped
                corpus = Path(tmp) / "corpus.txt"
                corpus.write_text("\n".join(read_documents(run.data.train, run)), encoding="utf-8")
                tok = train_tokenizer(t, [corpus])
            tok.save(saved)
        distributed.barrier(d)
    return Tokenizer.load(saved)


def checkpoint_tokenizer(run: RunConfig, run_dir: Path, d) -> Tokenizer | None:
    """The tokenizer saved in the newest complete checkpoint that has one (None: no checkpoint yet). A model
    resumes with the tokenizer it was trained with; a config that asks for another one is told so."""
    for path in reversed(state.checkpoints(run_dir)):
        try:
            tok = Tokenizer.load(path)
        except UserError:
            continue  # no tokenizer files: an older checkpoint may have them (the Trainer reports damage)
        try:
            before = (load_yaml(path / "config.yaml") or {}).get("tokenizer")
        except UserError:
            before = None
        differs = before is not None and before != to_dict(run.tokenizer)
        if run.tokenizer.path and not differs:
            try:
                wanted = Tokenizer.load(run.tokenizer.path)
                differs = (wanted.backend.to_str(), wanted.special_tokens) != (tok.backend.to_str(), tok.special_tokens)
            except UserError:
                differs = True
        if differs and d.main:
            t = run.tokenizer
            asked = f"tokenizer.path {t.path}" if t.path else f"tokenizer.train ({t.kind}, vocab_size {t.vocab_size})"
            print(
                f"note: resuming with the tokenizer saved in {path}, the one the model was trained with; the config "
                f"asks for {asked}, which differs and is not used",
                flush=True,
            )
        return tok
    return None


def train_tokenizer(t, files) -> Tokenizer:
    """A new vocabulary of the kind a `tokenizer:` section names, trained on `files`."""
    if t.kind == "wordpiece":
        return Tokenizer.train_wordpiece(files, vocab_size=t.vocab_size, lowercase=t.lowercase)
    if t.kind == "bpe":
        return Tokenizer.train_bpe(files, vocab_size=t.vocab_size)
    return Tokenizer.train_sentencepiece(
        files, vocab_size=t.vocab_size, extra_ids=t.extra_ids, model="unigram" if t.kind == "unigram" else "bpe"
    )


def fit_to_tokenizer(cfg, tok, vocab_size: int):
    """The model config with the tokenizer's vocabulary size and special ids."""
    changes = {"vocab_size": vocab_size}
    if isinstance(cfg, EncoderConfig):
        changes.update(pad_id=tok.pad_id if tok.pad_id is not None else 0)
    elif isinstance(cfg, Seq2SeqConfig):  # T5 and Marian start the decoder with the pad token
        if tok.pad_id is None or tok.eos_id is None:
            raise ConfigError(
                "tokenizer: an encoder-decoder model needs a pad and an end token (</s>); "
                "train one with tokenizer.kind: unigram"
            )
        changes.update(pad_id=tok.pad_id, eos_id=tok.eos_id, decoder_start_id=tok.pad_id)
    else:
        changes.update(eos_id=tok.eos_id, bos_id=tok.bos_id, pad_id=tok.pad_id)
    return dataclasses.replace(cfg, **changes)


def resolve_model(run: RunConfig, task: Task, tok):
    section = dict(run.model)
    cfg = model_config(section)
    if family_of(cfg) != task.family:
        wants = {
            "encoder": "an encoder (preset bert-*)",
            "decoder": "a decoder (preset gpt-* or llama-*)",
            "seq2seq": "an encoder-decoder (preset t5-*, transformer-* or marian-*)",
        }
        raise ConfigError(
            f"model: train.task {task.name!r} needs {wants.get(task.family, 'a ' + task.family)}, "
            f"but the model is a {family_of(cfg)}."
        )
    if "vocab_size" in section and section["vocab_size"] < tok.vocab_size:
        raise ConfigError(
            f"model.vocab_size: {section['vocab_size']} is smaller than the tokenizer's vocabulary ({tok.vocab_size})."
        )
    cfg = dataclasses.replace(fit_to_tokenizer(cfg, tok, section.get("vocab_size", tok.vocab_size)), head=task.head)
    if cfg.max_positions < run.data.seq_len:
        raise ConfigError(f"data.seq_len: {run.data.seq_len} is longer than model.max_positions ({cfg.max_positions}).")
    return cfg


def read_documents(paths, run: RunConfig, verbose: bool = False) -> list[str]:
    """The non-blank documents of `paths`; with data.skip_bad bad records are skipped, and counted if `verbose`."""
    reader = read_records(
        list(paths), text_column=run.data.text_column, text_mode=run.data.text_mode, skip_bad=run.data.skip_bad
    )
    docs = [r["text"] for r in reader if r["text"].strip()]
    skipped = reader.summary.as_dict()
    if verbose and skipped["skipped_total"]:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped["skipped"].items())
        print(
            f"{', '.join(map(str, paths))}: skipped {skipped['skipped_total']} bad records ({reasons}); "
            f"first: {skipped['skipped_examples'][0]}",
            flush=True,
        )
    if not docs:
        raise DataError(f"{', '.join(paths)}: no text found")
    return docs


def build_batches(run: RunConfig, task: Task, tok, d) -> tuple[Batches, Batches | None]:
    """The task's examples and collator for the training files, a held-out part, and their batch sources."""
    c, data = run.train, run.data
    train, collate_train = task.prepare(tok, read_documents(data.train, run, verbose=d.main), run)
    held, collate_eval = None, collate_train
    if data.eval:
        held, collate_eval = task.prepare(tok, read_documents(data.eval, run, verbose=d.main), run)
    elif data.eval_fraction > 0:
        train, held = train_val_split(train, data.eval_fraction, seed=c.seed)

    def batches(examples, collate, shuffle: bool, drop_last: bool) -> Batches:
        return Batches(
            examples,
            collate,
            c.batch_size,
            seed=c.seed,
            shuffle=shuffle,
            drop_last=drop_last,
            rank=d.rank,
            world=d.world,
        )

    train_batches = batches(train, collate_train, data.shuffle, True)
    eval_batches = batches(held, collate_eval, False, False) if held else None
    if len(train_batches) == 0:
        raise DataError(
            f"data.train: {len(train)} examples of {data.seq_len} tokens are fewer than one batch "
            f"({c.batch_size} x {d.world} processes); add data or lower train.batch_size"
        )
    return train_batches, eval_batches

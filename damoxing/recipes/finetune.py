"""`damoxing finetune CONFIG.yaml`: config -> model -> new head -> method -> Trainer -> save -> evaluate.

    result = finetune("damoxing/configs/finetune-minilm-bbc.yaml", "runs/bbc", overrides=["finetune.method=lora"])
    result.metrics["accuracy"], result.trainable_parameters, result.model_dir

The run folder holds
    config.yaml             the resolved config
    step-NNNNNN/            the Trainer's checkpoints (full, head and lora methods)
    model/                  the fine-tuned model, HF layout + finetune.json (LoRA: adapters merged in)
    adapter/                LoRA only: adapter_model.safetensors (adapters + head) + adapter_config.json
    eval/, test/            reports on the validation and test data (metrics.json, report.md/html, plots)
    result.json             method, parameter counts, wall time, headline metrics

The run folder is checked, locked and cleared of a killed run's leftovers before any work, as in
pretrain (damoxing/training/state.py); model/ and adapter/ are each written in one atomic step.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_dir, atomic_open
from ..config import from_dict, save_yaml, to_dict
from ..data.processors import load_processor
from ..data.readers import ReadSummary
from ..data.splits import train_val_split
from ..errors import ConfigError, DataError, UserError
from ..evaluation.evaluate import evaluate_records
from ..evaluation.report import write_report
from ..finetune.config import FinetuneRunConfig, default_pooling, load_finetune_config, method_defaults
from ..finetune.features import cached_features, default_cache_dir, fit_linear_head
from ..finetune.lora import load_adapters, merge_lora, save_adapters
from ..finetune.methods import layerwise_param_groups, prepare
from ..finetune.rows import merge_seen_rows, train_seen_rows
from ..io.checkpoint import load_into, load_model
from ..io.finetuned import save_finetuned
from ..models import create_model, family_of, model_config
from ..models.encoder import Encoder
from ..tasks import SupervisedTask, get_task
from ..tasks.classification import Classification
from ..tokenizer import Tokenizer
from ..training import state
from ..training.batches import Batches, LengthGroupedBatches, choose_layout
from ..training.config import TokenizerConfig
from ..training.trainer import Trainer
from .pretrain import fit_to_tokenizer, train_tokenizer


@dataclass
class FinetuneResult:
    method: str
    task: str
    trainable_parameters: int
    total_parameters: int
    wall_time: float  # seconds spent fitting: training, or embedding + classifier for `features`
    metrics: dict  # on the validation data (full evaluation); {} without validation data
    test_metrics: dict | None
    out_dir: Path
    model_dir: Path | None
    adapter_dir: Path | None = None
    from_cache: bool | None = None  # features: whether the training features came from the cache
    model: nn.Module | None = field(default=None, repr=False)  # the fine-tuned model (LoRA: unmerged)

    def summary(self) -> dict:
        keys = ("accuracy", "f1_macro", "loss", "mse", "pearson")
        pick = lambda m: {k: m[k] for k in keys if m and k in m}
        return {
            "method": self.method,
            "task": self.task,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "wall_time_s": round(self.wall_time, 2),
            "valid": pick(self.metrics),
            "test": pick(self.test_metrics) if self.test_metrics else None,
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "features_from_cache": self.from_cache,
        }


def build_model(cfg: FinetuneRunConfig, task, train: list[dict], out: Path):
    """(model, tokenizer) from `model.path` (a pretrained folder: its image processor if it has one, else its
    tokenizer), or a preset section and a tokenizer: loaded (`tokenizer.path`), trained on the training records
    (`tokenizer.train`, saved in OUT/tokenizer), or none (the task's preprocessor decides: images build theirs)."""
    if "path" in cfg.model:
        path = cfg.model["path"]
        return load_model(path), load_processor(path)
    if not cfg.model:
        raise ConfigError("model: give 'path' (a pretrained folder) or 'preset' (a fresh model).")
    config = model_config(cfg.model)
    if not cfg.tokenizer:
        return create_model(config), None
    t = from_dict(TokenizerConfig, cfg.tokenizer, prefix="tokenizer")
    if t.path:
        tokenizer = Tokenizer.load(t.path)
    else:
        with tempfile.TemporaryDirectory() as tmp:  # the trainer reads plain files
            corpus = Path(tmp) / "corpus.txt"
            corpus.write_text("\n".join(text.replace("\n", " ") for text in task.corpus(train)), encoding="utf-8")
            tokenizer = train_tokenizer(t, [corpus])
        tokenizer.save(out / "tokenizer")
    config = fit_to_tokenizer(config, tokenizer, cfg.model.get("vocab_size", tokenizer.vocab_size))
    return create_model(config), tokenizer


def finetune(
    config,
    out_dir: str | Path | None = None,
    overrides=(),
    *,
    model: nn.Module | None = None,
    tokenizer=None,
    config_name: str | None = None,
    verbose: bool = True,
    force: bool = False,
) -> FinetuneResult:
    """Fine-tune as `config` says (YAML path, dict or FinetuneRunConfig) into `out_dir` (default runs/<name>/).

    `model` and `tokenizer` replace the config's model section (the model is changed in place). `force`
    writes into a folder that holds other files, or replaces a finished run's model and reports.
    """
    cfg = load_finetune_config(config, overrides)
    name = config_name or (Path(config).stem if isinstance(config, (str, Path)) else "finetune")
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    with state.run_folder(out, force=force):
        if cfg.train.resume != "auto":
            state.refuse_earlier_run(out)
            if (out / "result.json").is_file() and not force:
                raise UserError(
                    f"{out} holds a finished fine-tuning run (result.json): write to another folder "
                    "(--out), or pass --force to replace its model and reports"
                )
        return _finetune(cfg, name, out, model, tokenizer, verbose)


def _finetune(
    cfg: FinetuneRunConfig, name: str, out: Path, model: nn.Module | None, tokenizer, verbose: bool
) -> FinetuneResult:
    cfg, chosen = method_defaults(cfg, pretrained="path" in cfg.model or model is not None)
    ft, data = cfg.finetune, cfg.data
    task = get_task(ft.task).configure(to_dict(ft))
    torch.set_num_threads(cfg.train.num_threads)
    given = "train.threads" if cfg.train.threads is not None else "the physical cores available; train.threads sets it"
    _log(verbose, f"threads {cfg.train.num_threads} ({given})")
    if model is None:
        _log(verbose, f"model: {cfg.model.get('path') or 'a fresh ' + str(cfg.model.get('preset', 'model'))}")
    for split in ("train", "valid", "test"):
        if getattr(data, split):
            _log(verbose, f"reading {split}: {', '.join(getattr(data, split))}")
    if model is not None and tokenizer is None and task.unit == "tokens":
        raise ConfigError(
            f"finetune(model=...): the {task.name} task reads text, so it needs the tokenizer too (tokenizer=...)."
        )

    # data: labels come from the training set; validation and test must use only those labels
    columns = columns_of(data)
    read = ReadSummary()  # what data.skip_bad skipped, in all three sets
    train, labels = task.label_map(list(task.read(data.train, columns, skip_bad=data.skip_bad, summary=read)))
    if data.max_train_examples:
        train = train[: data.max_train_examples]
    if data.valid:
        valid = list(task.read(data.valid, columns, labels=labels, skip_bad=data.skip_bad, summary=read))
    else:
        train, valid = train_val_split(train, data.valid_fraction, seed=cfg.train.seed)
    test = (
        list(task.read(data.test, columns, labels=labels, skip_bad=data.skip_bad, summary=read)) if data.test else None
    )
    if read.skipped:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(read.skipped.items()))
        _log(verbose, f"skipped {sum(read.skipped.values())} bad records ({reasons}); first: {read.examples[0]}")
    held_out = "" if data.valid or not valid else f" ({data.valid_fraction:.0%} of train held out, data.valid_fraction)"
    counts = f"examples: train {len(train)}, valid {len(valid)}{held_out}" + (f", test {len(test)}" if test else "")
    _log(verbose, counts)
    if not train or (not valid and (data.valid or data.valid_fraction > 0)):
        raise DataError(f"data: {len(train)} training and {len(valid)} validation records; need at least one of each")
    if not valid and cfg.train.patience:
        raise ConfigError("train.patience: early stopping needs validation data; set data.valid or data.valid_fraction")
    if not valid:
        _log(verbose, "no validation data (data.valid_fraction: 0 and no data.valid): the last model is kept")
    if labels is not None and len(labels) < 2:
        raise DataError(f"data.train: only one label ({labels.names[0]!r}); classification needs at least two")
    if model is None:
        torch.manual_seed(cfg.train.seed)  # a fresh model's initialisation follows train.seed
        model, tokenizer = build_model(cfg, task, train, out)
        _log(verbose, f"loaded {type(model).__name__}: {model.num_parameters():,} parameters")
    if task.family is not None and family_of(model.config) != task.family:
        raise ConfigError(f"finetune.task: {task.name} needs a {task.family} model, not a {family_of(model.config)}.")
    tokenizer = task.preprocessor(tokenizer, model, cfg.transforms, train)  # images: the ImageProcessor

    # model: a fresh head (an encoder's sequence head brings a pooler if the checkpoint had none), then the
    # task's pooling (the method's default unless set)
    torch.manual_seed(cfg.train.seed)  # the new head's initialisation
    had_pooler = getattr(model, "pooler", None) is not None
    model.reset_head(task.num_outputs(labels), task.head)
    fresh_pooler = not had_pooler and getattr(model, "pooler", None) is not None
    model.labels = list(labels.names) if labels is not None else ["score"]
    pooling, line = default_pooling(ft.method, ft.pooling, getattr(model, "config", None))
    chosen += [line] if line else []
    if pooling:
        if not hasattr(model.config, "pooling"):
            raise ConfigError(f"finetune.pooling: a {type(model).__name__} has no pooling choice; remove the key")
        model.config = dataclasses.replace(model.config, pooling=pooling)
    if fresh_pooler and ft.method != "full" and model.config.pooling == "pooler":
        # the checkpoint had no pooler (a masked-LM one): a method that freezes the body would leave it random
        if ft.pooling is not None:
            raise ConfigError(
                "finetune.pooling: pooler reads a pooler this checkpoint does not have (a masked-LM checkpoint); "
                f"method {ft.method} would leave the fresh one random and untrained. Use finetune.pooling: mean "
                "or cls, or finetune.method: full, which trains it."
            )
        pooling = "mean"
        model.config = dataclasses.replace(model.config, pooling=pooling)
        chosen.append(f"pooling mean (the checkpoint has no pooler, and {ft.method} would not train a new one)")
    cfg = dataclasses.replace(cfg, finetune=dataclasses.replace(ft, pooling=pooling))  # config.yaml: what ran
    ft = cfg.finetune
    _log(verbose, f"method {ft.method}: " + "; ".join(chosen))
    meta = {
        "task": task.name,
        "method": ft.method,
        "max_length": data.max_length,
        "labels": model.labels,
        **columns,
        **task.settings(),
    }
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(to_dict(cfg), out / "config.yaml")
    total = model.num_parameters()

    start = time.perf_counter()
    adapter_dir, from_cache = None, None
    if ft.method == "features":
        trainable = prepare(model, "features")
        cache = Path(ft.cache_dir) if ft.cache_dir else default_cache_dir()
        _log(verbose, f"feature cache: {cache} (finetune.cache_dir; 'damoxing cache clear' empties it)")
        feats = cached_features(
            model, tokenizer, task, train, data.max_length, ft.cache_dir or None, ft.eval_batch_size
        )
        fit_linear_head(model, feats.x, feats.y, task, c=ft.classifier_c, seed=cfg.train.seed)
        trainable, from_cache = sum(p.numel() for p in model.head.parameters()), feats.from_cache
        _log(verbose, f"features: {len(train)} examples {'from cache' if from_cache else 'embedded'} ({feats.path})")
    else:
        trainable = prepare(
            model,
            ft.method,
            lora_rank=ft.lora_rank,
            lora_alpha=ft.lora_alpha,
            lora_dropout=ft.lora_dropout,
            lora_targets=ft.lora_targets,
        )
        if trainable == 0:
            raise ConfigError(
                f"finetune.method: {ft.method} trains nothing here (the head has no weights of its own: "
                "its output layer is tied to the embeddings); use lora or full."
            )
        _train(model, tokenizer, task, cfg, train, valid, out, meta, verbose)
    wall = time.perf_counter() - start
    _log(verbose, f"{ft.method}: {trainable:,} trainable of {total:,} parameters; fitted in {wall:.1f}s")

    # save: LoRA writes the adapters (with the head) and a merged copy for serving
    model.eval()
    if ft.method == "lora":
        adapter_dir = out / "adapter"
        with atomic_dir(adapter_dir) as folder:
            save_adapters(model, folder)
        if ft.lora_merge:
            with atomic_dir(out / "model") as folder:  # finetune.json arrives with the weights, in one rename
                save_finetuned(merge_lora(copy.deepcopy(model)), tokenizer, folder, meta)
    if ft.method != "lora":
        with atomic_dir(out / "model") as folder:
            save_finetuned(model, tokenizer, folder, meta)

    metrics = {}
    if valid:
        metrics = evaluate_records(model, tokenizer, task, valid, model.labels, data.max_length, ft.eval_batch_size)
        write_report(metrics, out / "eval", title=f"{name}: {ft.method} fine-tuning, validation data")
    test_metrics = None
    if test is not None:
        test_metrics = evaluate_records(model, tokenizer, task, test, model.labels, data.max_length, ft.eval_batch_size)
        write_report(test_metrics, out / "test", title=f"{name}: {ft.method} fine-tuning, test data")
    model_dir = out / "model" if ft.method != "lora" or ft.lora_merge else None
    result = FinetuneResult(
        ft.method,
        ft.task,
        trainable,
        total,
        wall,
        metrics,
        test_metrics,
        out,
        model_dir,
        adapter_dir,
        from_cache,
        model,
    )
    with atomic_open(out / "result.json") as f:
        json.dump(result.summary(), f, indent=2)
        f.write("\n")
    for line in results_table(metrics, test_metrics, out, chose_on_valid=bool(valid) and ft.method != "features"):
        _log(verbose, line)
    return result


TABLE_COLUMNS = {  # metric key -> column title, in this order
    "accuracy": "accuracy",
    "f1_macro": "macro-F1",
    "bleu": "BLEU",
    "chrf": "chrF",
    "mse": "MSE",
    "pearson": "Pearson",
    "loss": "loss",
}


def results_table(valid: dict, test: dict | None, out: Path, chose_on_valid: bool) -> list[str]:
    """The lines that end a run: a row each for valid and test, a column per headline metric, then where the
    reports are (so the last thing printed is not the validation score alone)."""
    test = test or {}
    columns = [k for k in TABLE_COLUMNS if isinstance(valid.get(k, test.get(k)), (int, float))]
    rows = [["", *(TABLE_COLUMNS[k] for k in columns)]]
    for split, values in (("valid", valid), ("test", test)):
        rows.append([split, *(f"{values[k]:.4f}" if k in values else "-" for k in columns)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows
    ]
    chose = "; the kept model was chosen on valid, so test is the fair estimate" if chose_on_valid else ""
    lines.append(f"(both evaluated in fp32{chose})")
    if test:
        lines.append(f"test report: {out / 'test' / 'report.md'}")
    elif valid:
        lines.append(f"no test data (data.test); the validation report: {out / 'eval' / 'report.md'}")
    else:
        lines.append("no validation or test data (data.valid, data.valid_fraction, data.test): nothing was evaluated")
    lines.append(f"result: {out / 'result.json'}")
    return lines


def _log(verbose: bool, message: str) -> None:
    if verbose:
        print(message, flush=True)


def columns_of(data) -> dict:
    """The column names of a data section (what a task's `read` takes, and what finetune.json records)."""
    columns = {
        k: getattr(data, k)
        for k in (
            "text_column",
            "text_pair_column",
            "label_column",
            "tokens_column",
            "tags_column",
            "source_column",
            "target_column",
            "header",
        )
    }
    return {**columns, **({"label_names": list(data.label_names)} if data.label_names else {})}


def batch_layout(task: SupervisedTask, model, examples: list[dict], data, tc) -> str:
    """Training batches packed, grouped by length or plain, as data.packing and data.group_by_length ask (auto: what
    saves computation on these examples; training/batches.py choose_layout). Packing needs a classification
    task (one label per text) on an encoder, which takes the block-diagonal mask."""
    if not examples or "input_ids" not in examples[0]:
        return "plain"  # images, tables: nothing to pad
    can_pack = isinstance(task, Classification) and isinstance(model, Encoder)
    if data.packing is True and not can_pack:
        raise ConfigError(
            f"data.packing: packing needs a classification, pair or regression task on an encoder model, not the "
            f"{task.name} task on a {type(model).__name__}; set data.packing: auto or false."
        )
    lengths = [len(e["input_ids"]) for e in examples]
    layout, _ = choose_layout(
        lengths, tc.batch_size, data.max_length, data.packing, data.group_by_length, can_pack, tc.seed
    )
    return layout


def _train(
    model,
    tokenizer,
    task: SupervisedTask,
    cfg: FinetuneRunConfig,
    train: list[dict],
    valid: list[dict],
    out: Path,
    meta: dict,
    verbose: bool = True,
):
    """Prepare the examples once, build batch sources and run the Trainer (the task collates; the config's
    precision); evaluate once per epoch unless train.eval_every says otherwise, and keep the best weights."""
    ft, data, tc = cfg.finetune, cfg.data, cfg.train
    train_ex = task.examples(tokenizer, train, data.max_length)
    valid_ex = task.examples(tokenizer, valid, data.max_length)
    layout = batch_layout(task, model, train_ex, data, tc)
    # text: dynamic padding, or packed rows of max_length; images: augmentation
    packing = {"packing": data.max_length} if layout == "packed" else {}
    collate = task.collate(tokenizer, training=True, **packing)
    if layout == "grouped":
        train_batches = LengthGroupedBatches(train_ex, collate, tc.batch_size, seed=tc.seed)
    else:
        train_batches = Batches(train_ex, collate, tc.batch_size, seed=tc.seed, shuffle=True, drop_last=False)
    valid_batches = None  # no validation data: no evaluation during training, and the last model is kept
    if valid_ex:
        valid_batches = Batches(
            valid_ex,
            task.collate(tokenizer, training=False, **packing),
            ft.eval_batch_size,
            shuffle=False,
            drop_last=False,
        )
    per_epoch = math.ceil(len(train_batches) / tc.grad_accum)  # optimiser steps
    if tc.epochs:  # the schedule spans the run that will happen (as the HF Trainer computes it)
        tc = dataclasses.replace(tc, max_steps=min(tc.max_steps, tc.epochs * per_epoch))
    if not tc.eval_every:
        tc = dataclasses.replace(tc, eval_every=per_epoch)
    every = "every epoch" if tc.eval_every == per_epoch else f"every {tc.eval_every} steps"
    evaluating = f"evaluating {every} in {tc.eval_precision}" if valid_batches else "no validation data"
    _log(verbose, f"training {tc.max_steps} steps ({per_epoch} per epoch); {evaluating}")
    if ft.method == "lora":
        save, load = save_adapters, load_adapters
    else:
        save, load = (lambda m, folder: save_finetuned(m, tokenizer, folder, meta)), load_into
    try:
        if ft.method == "full":  # only the token rows the training data holds can move (finetune/rows.py)
            seen = {t for e in train_ex for t in e.get("input_ids", ())}  # each id once, not every token
            train_seen_rows(model, torch.tensor(sorted(seen), dtype=torch.long))
        groups = None  # the Trainer's decay / no-decay groups
        if ft.method == "full" and ft.layerwise_lr_decay < 1.0:  # groups with an lr_scale per depth
            groups = layerwise_param_groups(model, tc.lr, ft.layerwise_lr_decay, tc.weight_decay)
        trainer = Trainer(
            model,
            task,
            train_batches,
            tc,
            out,
            eval_data=valid_batches,
            save=save,
            load=load,
            run_config=to_dict(cfg),
            param_groups=groups,
        )
        fit = trainer.fit(resume=tc.resume)
        best, kept = fit["best"], state.best_checkpoint(out)
        how = f"valid {tc.metric} {best['value']:.4f}" if best["value"] is not None else ""
        if valid_batches is None:
            _log(verbose, f"no validation data: the last model (step {fit['step']}) is kept")
        elif kept is None:
            _log(verbose, f"kept the last model (step {fit['step']}): no evaluation chose a best one")
        elif best["step"] != fit["step"]:
            (load_adapters if ft.method == "lora" else load_into)(model, kept)
            _log(verbose, f"kept the best model: step {best['step']} of {fit['step']} ({how}, train.metric)")
        else:
            _log(verbose, f"kept the last model (step {fit['step']}): it is the best ({how}, train.metric)")
    finally:
        merge_seen_rows(model)  # plain embeddings again, whatever happened
    return fit

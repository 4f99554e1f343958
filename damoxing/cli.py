"""The `damoxing` command line. Each subcommand is a small `_cmd_*` function over library calls.

User errors (bad files, configs, requests) print one message and exit 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import UserError


def _cmd_convert(args) -> None:
    from .io.checkpoint import convert

    convert(args.src, args.dst, dtype=args.dtype)
    print(f"wrote {args.dst}")


def _cmd_data_clean(args) -> None:
    import json

    from .data.clean import clean_corpus

    summary = clean_corpus(args.input, args.output, min_length=args.min_length, max_length=args.max_length,
                           redact=not args.no_redact, dedup=not args.no_dedup, skip_bad=args.skip_bad,
                           text_column=args.text_column, label_column=args.label_column, text_mode=args.text_mode)
    print(json.dumps(summary, ensure_ascii=False, indent=2))


def _cmd_pretrain(args) -> None:
    from .recipes.pretrain import pretrain

    pretrain(args.config, out=args.out, resume=args.resume, overrides=args.overrides)


def _cmd_finetune(args) -> None:
    from .recipes.finetune import finetune

    overrides = list(args.overrides) + (["train.resume=auto"] if args.resume else [])
    result = finetune(args.config, args.out, overrides=overrides)
    print(f"wrote {result.out_dir} (model: {result.model_dir or result.adapter_dir})")


def _cmd_evaluate(args) -> None:
    import json
    from pathlib import Path

    from .recipes.evaluate import evaluate_model

    # default report folder: beside the model folder, named after the data file (runs/x/eval-test/)
    data_name = Path(args.data).name.split(".")[0]
    out = Path(args.out) if args.out is not None else Path(args.model).resolve().parent / f"eval-{data_name}"
    columns = {"text_column": args.text_column, "text_pair_column": args.text_pair_column,
               "label_column": args.label_column}
    metrics = evaluate_model(args.model, args.data, out, batch_size=args.batch_size, max_length=args.max_length,
                             skip_bad=args.skip_bad, columns=columns)
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False, indent=2))
    else:
        keys = [k for k in ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro",
                            "ece", "loss", "mse", "rmse", "mae", "pearson", "spearman", "perplexity") if k in metrics]
        print("  ".join(f"{k} {metrics[k]:.4f}" for k in keys))
    print(f"report: {out}/report.md", file=sys.stderr)


def _cmd_predict(args) -> None:
    from .inference.predict import format_row, write_jsonl
    from .recipes.evaluate import predict

    if args.data is None and not args.texts:
        raise UserError("give texts to classify, or --data FILE")
    texts = None if args.data is not None else args.texts
    if args.data is not None and args.texts:
        raise UserError("give texts or --data FILE, not both")
    rows = predict(args.model, texts, args.data, batch_size=args.batch_size, skip_bad=args.skip_bad)
    if args.data is None:
        for row in rows:
            print(format_row(row))
    elif args.output:
        from .atomic import atomic_open

        with atomic_open(args.output) as f:
            n = write_jsonl(rows, f)
        print(f"wrote {n} predictions to {args.output}", file=sys.stderr)
    else:
        write_jsonl(rows, sys.stdout)


def _cmd_translate(args) -> None:
    from .inference.predict import write_jsonl
    from .recipes.translate import translate

    if (args.data is None) == (not args.texts):
        raise UserError("give texts to translate, or --data FILE (not both)")
    rows = translate(args.model, args.texts or None, args.data, num_beams=args.num_beams,
                     max_new_tokens=args.max_new_tokens, length_penalty=args.length_penalty,
                     max_length=args.max_length, source_column=args.source_column, batch_size=args.batch_size,
                     skip_bad=args.skip_bad)
    if args.data is None:
        for row in rows:
            print(row["translation"], flush=True)
    elif args.output:
        from .atomic import atomic_open

        with atomic_open(args.output) as f:
            n = write_jsonl(rows, f)
        print(f"wrote {n} translations to {args.output}", file=sys.stderr)
    else:
        write_jsonl(rows, sys.stdout)


def _cmd_quickstart(args) -> None:
    from .recipes.quickstart import quickstart

    quickstart(args.out, model=args.model, pretrain_minutes=args.pretrain_minutes,
               finetune_examples=args.finetune_examples, max_length=args.max_length, epochs=args.epochs)


def _run_arguments(parser: argparse.ArgumentParser, sections: str, func) -> None:
    """What every config-driven run takes: CONFIG.yaml, --out, --resume and --section.key=value overrides."""
    parser.add_argument("config", help=f"YAML config with {sections} sections")
    parser.add_argument("--out", default=None, help="run folder (default runs/<config name>/)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    parser.set_defaults(func=func, accepts_overrides=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="damoxing", description="Build, pretrain, fine-tune, evaluate and use Transformer models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("convert", help="convert a checkpoint (HF folder or GGUF file) into an HF safetensors folder")
    c.add_argument("src", help="HF model folder, or a .gguf file")
    c.add_argument("dst", help="output folder")
    c.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="cast weights on save")
    c.set_defaults(func=_cmd_convert)

    pt = sub.add_parser("pretrain", help="pretrain an encoder (MLM + NSP) or a decoder (next token) from a YAML config",
                        epilog="Any config value can be overridden: --train.lr=3e-4 --data.seq_len=256")
    _run_arguments(pt, "model, tokenizer, data and train", _cmd_pretrain)

    d = sub.add_parser("data", help="prepare data sets")
    data_sub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dc = data_sub.add_parser("clean", help="normalise, deduplicate, length-filter and redact PII in a corpus; prints a JSON summary")
    dc.add_argument("input", help="a .txt/.jsonl/.csv/.tsv/.parquet file (optionally .gz) or a folder")
    dc.add_argument("output", help="output .txt or .jsonl file (optionally .gz), written atomically")
    dc.add_argument("--min-length", type=int, default=1, help="drop documents shorter than this many characters")
    dc.add_argument("--max-length", type=int, default=None, help="drop documents longer than this many characters")
    dc.add_argument("--no-redact", action="store_true", help="keep e-mails, phones, ID and card numbers, IP addresses")
    dc.add_argument("--no-dedup", action="store_true", help="keep exact duplicates")
    dc.add_argument("--skip-bad", action="store_true", help="skip and count bad records instead of stopping at the first")
    dc.add_argument("--text-column", default="text", help="text column or field (JSONL, CSV, Parquet)")
    dc.add_argument("--label-column", default=None, help="label column or field to carry into .jsonl output")
    dc.add_argument("--text-mode", default=None, choices=["paragraph", "line", "file"],
                    help="plain text: documents are paragraphs (default), lines, or whole files")
    dc.set_defaults(func=_cmd_data_clean)

    ft = sub.add_parser("finetune", help="fine-tune a model for classification or regression (full, head, features, lora)",
                        epilog="Any config value can be overridden: --finetune.method=lora --train.lr=1e-4")
    _run_arguments(ft, "model, data, finetune and train", _cmd_finetune)

    ev = sub.add_parser("evaluate", help="metrics and a report (Markdown, HTML, plots) of a fine-tuned model on labelled data")
    ev.add_argument("--model", required=True, help="fine-tuned model folder (e.g. runs/NAME/model)")
    ev.add_argument("--data", required=True, help="labelled .csv/.tsv/.jsonl/.parquet file (optionally .gz) or folder")
    ev.add_argument("--out", default=None, help="report folder: metrics.json, report.md, report.html, plots "
                    "(default: eval-<data name>/ beside the model folder)")
    ev.add_argument("--json", action="store_true", help="print every metric as JSON")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--max-length", type=int, default=None, help="default: the length the model was trained with")
    ev.add_argument("--text-column", default=None, help="default: the column the model was trained on")
    ev.add_argument("--text-pair-column", default=None, help="second text of sentence pairs")
    ev.add_argument("--label-column", default=None)
    ev.add_argument("--skip-bad", action="store_true", help="skip and count bad records instead of stopping")
    ev.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", help="labels with probabilities for texts, or JSON Lines for a file (streamed)")
    pr.add_argument("--model", required=True, help="fine-tuned model folder")
    pr.add_argument("texts", nargs="*", help="texts to classify")
    pr.add_argument("--data", default=None, help="a file to predict (.txt: one text per line; .csv/.jsonl/...)")
    pr.add_argument("--output", "-o", default=None, help="write the JSON Lines here instead of stdout")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--skip-bad", action="store_true", help="skip bad records instead of stopping")
    pr.set_defaults(func=_cmd_predict)

    tr = sub.add_parser("translate", help="translate texts, or a file into JSON Lines, with an encoder-decoder model "
                        "(greedy or beam search)")
    tr.add_argument("model", help="encoder-decoder folder (a translation run's model/, T5, Marian)")
    tr.add_argument("texts", nargs="*", help="texts to translate")
    tr.add_argument("--data", default=None, help="a file to translate (.txt: one text per line; .jsonl/.csv/...: "
                    "--source-column)")
    tr.add_argument("--output", "-o", default=None, help="write the JSON Lines here instead of stdout")
    tr.add_argument("--num-beams", type=int, default=None, help="beam search width (1: greedy; default: as trained)")
    tr.add_argument("--max-new-tokens", type=int, default=None, help="the longest translation, in tokens")
    tr.add_argument("--length-penalty", type=float, default=None, help="beam score / length ** this")
    tr.add_argument("--max-length", type=int, default=None, help="cut sources to this many tokens")
    tr.add_argument("--source-column", default=None, help="the column to translate in a table")
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--skip-bad", action="store_true", help="skip bad records instead of stopping")
    tr.set_defaults(func=_cmd_translate)

    q = sub.add_parser("quickstart", help="tokenizer -> pretrain -> fine-tune MiniLM -> evaluate, on bundled data")
    q.add_argument("--out", default="runs/quickstart", help="run folder for every step's output")
    q.add_argument("--model", default=None, help="pretrained BERT-family HF folder (default: the bundled MiniLM)")
    q.add_argument("--pretrain-minutes", type=float, default=2.0, help="wall-clock budget of the pretraining step")
    q.add_argument("--finetune-examples", type=int, default=0, help="use only N training articles (0 = all)")
    q.add_argument("--max-length", type=int, default=96, help="tokens per article for fine-tuning")
    q.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    q.set_defaults(func=_cmd_quickstart)

    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        args.func(args)
    except UserError as e:
        print(f"damoxing {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

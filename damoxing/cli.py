"""The `damoxing` command line. Each subcommand is a small `_cmd_*` function over library calls.

User errors (bad files, configs, requests) print one message and exit 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import UserError


def _cmd_convert(args) -> None:
    from .checkpoint import convert

    convert(args.src, args.dst, dtype=args.dtype)
    print(f"wrote {args.dst}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="damoxing", description="Build, pretrain, fine-tune, evaluate and use Transformer models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("convert", help="convert a checkpoint (HF folder or GGUF file) into an HF safetensors folder")
    c.add_argument("src", help="HF model folder, or a .gguf file")
    c.add_argument("dst", help="output folder")
    c.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="cast weights on save")
    c.set_defaults(func=_cmd_convert)

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

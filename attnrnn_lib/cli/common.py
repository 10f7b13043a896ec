"""What every command shares: one-line errors with exit code 2, logging, and Magenta-compatible flags."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

from attnrnn_lib import import_tensorflow_quietly
from attnrnn_lib.errors import UsageError

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (``error: --flag: ...``) and exits with 2."""

    def error(self, message: str):  # noqa: D102 - argparse hook
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def make_parser(prog: str, description: str) -> Parser:
    p = Parser(prog=prog, description=description, allow_abbrev=False)
    p.add_argument("--log", default="INFO", choices=["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "FATAL"],
                   help="logging level (as Magenta's --log)")
    return p


def add_magenta_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="attention_rnn", choices=["attention_rnn"],
                   help="accepted for Magenta compatibility; only attention_rnn exists here")


def setup_logging(level: str) -> None:
    level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
    logging.basicConfig(level=getattr(logging, level), format="%(levelname)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None) -> int:
    """Parses flags, runs `main`, and turns a UsageError into one stderr line and exit code 2."""
    args = parser.parse_args(argv)
    setup_logging(args.log)
    try:
        return int(main(args) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


def positive_int(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
        return v

    parse.__name__ = flag
    return parse

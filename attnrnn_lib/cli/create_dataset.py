"""attention_rnn_create_dataset: NoteSequence TFRecord -> training/eval SequenceExample TFRecords."""

from __future__ import annotations

import logging
import sys
import time

from attnrnn_lib import dataset
from attnrnn_lib.cli import common

log = logging.getLogger("attnrnn")


def build_parser() -> common.Parser:
    p = common.make_parser("attention_rnn_create_dataset", __doc__)
    common.add_magenta_config_flag(p)
    p.add_argument("--input", required=True, help="TFRecord of NoteSequences (from convert_dir_to_note_sequences)")
    p.add_argument("--output_dir", required=True, help="where training_melodies/eval_melodies.tfrecord go")
    p.add_argument("--eval_ratio", type=float, default=0.1, help="fraction of NoteSequences for eval, in [0, 1]")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/eval split")
    p.add_argument("--num_workers", type=common.positive_int("--num_workers"), help="processes (default: CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def main_args(args) -> int:
    records = dataset.read_note_sequences(args.input)
    t0 = time.perf_counter()
    report = dataset.create_dataset(records, args.output_dir, args.eval_ratio, args.seed, args.num_workers,
                                    args.overwrite)
    for line in report.lines():
        log.info("%s", line)
    n = sum(s["sequence_examples"] for s in report.stats.values())
    log.info("wrote %d SequenceExamples (%d training, %d eval) to %s in %.1f s", n,
             report.stats["training"]["sequence_examples"], report.stats["eval"]["sequence_examples"],
             args.output_dir, time.perf_counter() - t0)
    return 0


def main(argv=None) -> int:
    return common.run(main_args, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

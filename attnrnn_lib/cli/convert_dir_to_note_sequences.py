"""convert_dir_to_note_sequences: MIDI/MusicXML/ABC files (or music21's folk corpora) -> NoteSequence TFRecord."""

from __future__ import annotations

import logging
import sys

from attnrnn_lib import corpus, midi_io
from attnrnn_lib.cli import common
from attnrnn_lib.errors import UsageError

log = logging.getLogger("attnrnn")


def build_parser() -> common.Parser:
    p = common.make_parser("convert_dir_to_note_sequences", __doc__)
    p.add_argument("--input_dir", help="directory of .mid/.midi, .xml/.mxl and .abc files")
    p.add_argument("--music21_corpus", metavar="NAMES",
                   help=f"instead of --input_dir: comma-separated music21 corpora (default set: "
                        f"{','.join(corpus.DEFAULT_CORPORA)}; opt-in: essenFolksong, non-commercial licence)")
    p.add_argument("--music21_max_files", type=common.positive_int("--music21_max_files"),
                   help="only the first N ABC files of each corpus (a quick try)")
    p.add_argument("--output_file", required=True, help="TFRecord of NoteSequences to write")
    p.add_argument("--recursive", action="store_true", help="also convert files in subdirectories")
    p.add_argument("--num_workers", type=common.positive_int("--num_workers"), help="processes (default: CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output_file")
    return p


def main_args(args) -> int:
    if bool(args.input_dir) == bool(args.music21_corpus):
        raise UsageError("give exactly one of --input_dir and --music21_corpus")
    if args.music21_corpus:
        names = corpus.parse_corpus_names(args.music21_corpus)
        midi_io.check_output_file(args.output_file, args.overwrite)
        path, rep = corpus.build_corpus(names, args.output_file, args.num_workers, args.music21_max_files,
                                        overwrite=args.overwrite)
        if rep.get("built"):
            reasons = ", ".join(f"{n} {r}" for r, n in rep["skipped"].items())
            log.info("%d tunes, %d converted, %d skipped%s", rep["tunes"], rep["converted"],
                     sum(rep["skipped"].values()), f": {reasons}" if reasons else "")
        else:
            log.info("%d NoteSequences from the cache %s", rep["converted"], rep["cache"])
        log.info("wrote %s", path)
        return 0
    report = midi_io.convert_directory(args.input_dir, args.output_file, args.recursive, args.num_workers,
                                       args.overwrite)
    log.info("%s; wrote %s", report.summary(), args.output_file)
    return 0


def main(argv=None) -> int:
    return common.run(main_args, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())

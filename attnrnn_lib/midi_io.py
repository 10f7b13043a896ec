"""A directory of MIDI / MusicXML / ABC files -> one TFRecord of NoteSequences, robustly.

Parsing is note-seq's (pretty_midi underneath). Unlike Magenta's script, a bad file never stops the run and
never passes silently: every skipped file is logged with its reason and counted in the summary.
Files are taken in sorted order (Magenta uses the unsorted directory listing), so outputs are reproducible.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import warnings

from attnrnn_lib._note_seq import abc_parser, midi_io, music_pb2, musicxml_reader

from attnrnn_lib import tfrecord
from attnrnn_lib.errors import UsageError
from attnrnn_lib.parallel import default_workers, ordered_map

log = logging.getLogger("attnrnn")

MIDI_EXT = (".mid", ".midi")
MUSICXML_EXT = (".xml", ".mxl", ".musicxml")
ABC_EXT = (".abc",)
MAX_FILE_BYTES = 64 << 20  # a "MIDI" file this large is not a melody; refuse instead of eating memory


def note_sequence_id(filename: str, collection: str, source_type: str) -> str:
    """Magenta's stable id: ``/id/<type>/<collection>/<sha1(relative filename)>``."""
    return f"/id/{source_type}/{collection}/{hashlib.sha1(filename.encode('utf-8')).hexdigest()}"


def list_music_files(root: str, recursive: bool) -> list[str]:
    """Relative paths of the files to convert: a directory's files (sorted) before its subdirectories."""
    out: list[str] = []

    def visit(rel: str) -> None:
        try:
            entries = sorted(os.scandir(os.path.join(root, rel)), key=lambda e: e.name)
        except OSError as e:
            log.warning("skipped directory %s: %s", os.path.join(root, rel), e.strerror)
            return
        subdirs = []
        for e in entries:
            path = os.path.join(rel, e.name) if rel else e.name
            if e.is_dir(follow_symlinks=False):
                subdirs.append(path)
            else:
                out.append(path)
        if recursive:
            for d in subdirs:
                visit(d)

    visit("")
    return out


@dataclasses.dataclass(frozen=True)
class _Job:
    root: str
    rel: str
    collection: str


def _skip(reason: str) -> tuple[list[bytes], str]:
    return [], reason


def _convert_one(job: _Job) -> tuple[list[bytes], str]:
    """Returns (serialized NoteSequences, skip reason or '')."""
    path = os.path.join(job.root, job.rel)
    ext = os.path.splitext(job.rel)[1].lower()
    if ext not in MIDI_EXT + MUSICXML_EXT + ABC_EXT:
        return _skip("not a MIDI, MusicXML or ABC file")
    try:
        size = os.path.getsize(path)
        if size == 0:
            return _skip("empty file")
        if size > MAX_FILE_BYTES:
            return _skip(f"larger than {MAX_FILE_BYTES >> 20} MiB")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return _skip(f"unreadable ({e.strerror})")
    filename = job.rel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pretty_midi warns on every odd file; we report a reason instead
        try:
            if ext in MIDI_EXT:
                seqs = [(midi_io.midi_to_note_sequence(data), "midi", filename)]
            elif ext in MUSICXML_EXT:
                seqs = [(musicxml_reader.musicxml_file_to_sequence_proto(path), "musicxml", filename)]
            else:
                tunes, errors = abc_parser.parse_abc_tunebook(data.decode("utf-8", errors="replace"))
                seqs = [(t, "abc", f"{filename}_{i}") for i, t in sorted(tunes.items())]
                if not seqs and errors:
                    return _skip(f"ABC parse error ({type(errors[0]).__name__})")
        except (midi_io.MIDIConversionError, musicxml_reader.MusicXMLConversionError) as e:
            msg = str(e).splitlines()[0][:80] if str(e) else type(e).__name__
            return _skip(f"not a readable {ext[1:]} file ({msg})")
        except Exception as e:  # pretty_midi/mido raise many types on hostile input; the run must go on
            return _skip(f"parse error ({type(e).__name__}: {str(e).splitlines()[0][:60] if str(e) else ''})")
    out = []
    for seq, kind, name in seqs:
        if not seq.notes:
            continue
        seq.collection_name = job.collection
        seq.filename = filename
        seq.id = note_sequence_id(name, job.collection, kind)
        out.append(seq.SerializeToString())
    if not out:
        return _skip("no notes")
    return out, ""


@dataclasses.dataclass
class ConversionReport:
    converted_files: int = 0
    sequences: int = 0
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # relative path -> reason

    def summary(self) -> str:
        counts = collections.Counter(self.skipped.values())
        reasons = ", ".join(f"{n} {r}" for r, n in counts.most_common())
        return (f"{self.converted_files} converted ({self.sequences} NoteSequences), "
                f"{len(self.skipped)} skipped" + (f": {reasons}" if reasons else ""))


def convert_directory(input_dir: str, output_file: str, recursive: bool = False, num_workers: int | None = None,
                      overwrite: bool = False) -> ConversionReport:
    """Converts every music file under `input_dir` into NoteSequences written to `output_file`.

    Raises:
      UsageError: a missing input directory or an existing output (without `overwrite`).
    """
    if not os.path.isdir(input_dir):
        raise UsageError(f"--input_dir: not a directory: {input_dir}")
    check_output_file(output_file, overwrite)
    root = os.path.abspath(input_dir)
    collection = os.path.basename(root.rstrip(os.sep))
    files = list_music_files(root, recursive)
    report = ConversionReport()
    jobs = [_Job(root, rel, collection) for rel in files]
    with tfrecord.AtomicTFRecordWriter(output_file, overwrite=True) as writer:
        for job, (records, reason) in zip(jobs, ordered_map(_convert_one, jobs, num_workers or default_workers(),
                                                            desc="converting")):
            if reason:
                report.skipped[job.rel] = reason
                log.warning("skipped %s: %s", job.rel, reason)
                continue
            report.converted_files += 1
            report.sequences += len(records)
            writer.write_all(records)
    return report


def check_output_file(output_file: str, overwrite: bool) -> None:
    """Refuses an output that exists (without overwrite) or whose directory is missing or read-only."""
    directory = os.path.dirname(os.path.abspath(output_file))
    if os.path.isdir(output_file):
        raise UsageError(f"--output_file: {output_file} is a directory")
    if os.path.exists(output_file) and not overwrite:
        raise UsageError(f"--output_file: {output_file} already exists (pass --overwrite to replace it)")
    if not os.path.isdir(directory):
        raise UsageError(f"--output_file: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"--output_file: directory {directory} is not writable")

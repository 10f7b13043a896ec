"""A directory of MIDI / MusicXML / ABC files -> one TFRecord of NoteSequences, robustly.

Parsing is note-seq's (pretty_midi underneath). Unlike Magenta's script, a bad file never stops the run and
never passes silently: every skipped file is logged with its reason and counted in the summary.
Files are taken in sorted order (Magenta uses the unsorted directory listing), so outputs are reproducible.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import logging
import os
import stat
import warnings

import mido
import pretty_midi

from attnrnn_lib._note_seq import abc_parser, midi_io, music_pb2, musicxml_reader

from attnrnn_lib import tfrecord
from attnrnn_lib.errors import UsageError
from attnrnn_lib.parallel import ordered_map, usable_cores

log = logging.getLogger("attnrnn")

MIDI_EXT = (".mid", ".midi")
MUSICXML_EXT = (".xml", ".mxl", ".musicxml")
ABC_EXT = (".abc",)
MAX_FILE_BYTES = 64 << 20  # a "MIDI" file this large is not a melody; refuse instead of eating memory
# pretty_midi builds a float64 tick -> seconds table as long as the last tick, and note-seq lifts pretty_midi's
# own 1e7 cap to 1e10: one 1 KB file with a huge delta time then costs gigabytes and seconds. 30M ticks is
# 7 hours at 960 ticks per quarter and 120 qpm (a 240 MB table), far beyond any melody.
MAX_TICKS = 30_000_000


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


class UnreadableFile(Exception):
    """A file that cannot be converted; the message is the reason logged and counted."""


def _describe(e: Exception) -> str:
    text = str(e).splitlines()[0][:60] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def midi_bytes_to_note_sequence(data: bytes) -> music_pb2.NoteSequence:
    """note-seq's MIDI conversion (pretty_midi underneath), refusing files whose tick table would be huge.

    Raises:
      UnreadableFile: with the reason the file cannot be read.
    """
    try:
        mid = mido.MidiFile(file=io.BytesIO(data), charset="latin1")  # pretty_midi's own settings
    except EOFError:
        raise UnreadableFile("truncated MIDI (the file ends inside a chunk)") from None
    except Exception as e:  # mido raises OSError, ValueError, KeyError... on hostile bytes
        raise UnreadableFile(f"not a readable MIDI file ({_describe(e)})") from None
    if not mid.tracks or not any(len(t) for t in mid.tracks):
        raise UnreadableFile("MIDI file with no tracks")
    last = max(sum(m.time for m in t) for t in mid.tracks)
    if last > MAX_TICKS:
        raise UnreadableFile(f"corrupt MIDI timing (an event at tick {last:,}, the limit is {MAX_TICKS:,})")
    try:
        return midi_io.midi_to_note_sequence(pretty_midi.PrettyMIDI(mido_object=mid))
    except Exception as e:
        raise UnreadableFile(f"unreadable MIDI ({_describe(e)})") from None


def _read(job: _Job, ext: str) -> list[tuple[music_pb2.NoteSequence, str, str]]:
    """(NoteSequence, source type, name for its id) for each piece in one file."""
    path = os.path.join(job.root, job.rel)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile("not a regular file")  # a FIFO named x.mid would block the reader forever
        if info.st_size == 0:
            raise UnreadableFile("empty file")
        if info.st_size > MAX_FILE_BYTES:
            raise UnreadableFile(f"larger than {MAX_FILE_BYTES >> 20} MiB")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UnreadableFile(f"unreadable ({e.strerror})") from None
    if ext in MIDI_EXT:
        return [(midi_bytes_to_note_sequence(data), "midi", job.rel)]
    try:
        if ext in MUSICXML_EXT:
            return [(musicxml_reader.musicxml_file_to_sequence_proto(path), "musicxml", job.rel)]
        tunes, errors = abc_parser.parse_abc_tunebook(data.decode("utf-8", errors="replace"))
    except musicxml_reader.MusicXMLConversionError as e:
        raise UnreadableFile(f"not a readable {ext[1:]} file ({str(e).splitlines()[0][:80] if str(e) else 'no detail'})")
    except Exception as e:  # the XML and ABC parsers raise many types on hostile input; the run must go on
        raise UnreadableFile(f"parse error ({_describe(e)})") from None
    if not tunes and errors:
        raise UnreadableFile(f"ABC parse error ({type(errors[0]).__name__})")
    return [(t, "abc", f"{job.rel}_{i}") for i, t in sorted(tunes.items())]


def _convert_one(job: _Job) -> tuple[list[bytes], str]:
    """Returns (serialized NoteSequences, skip reason or '')."""
    ext = os.path.splitext(job.rel)[1].lower()
    if ext not in MIDI_EXT + MUSICXML_EXT + ABC_EXT:
        return [], "not a MIDI, MusicXML or ABC file"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pretty_midi warns on every odd file; we report a reason instead
        try:
            seqs = _read(job, ext)
        except UnreadableFile as e:
            return [], str(e)
    out = []
    for seq, kind, name in seqs:
        if not seq.notes:
            continue
        seq.collection_name = job.collection
        seq.filename = job.rel
        seq.id = note_sequence_id(name, job.collection, kind)
        out.append(seq.SerializeToString())
    if not out:
        return [], "no notes"
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
        for job, (records, reason) in zip(jobs, ordered_map(_convert_one, jobs, num_workers or usable_cores(),
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

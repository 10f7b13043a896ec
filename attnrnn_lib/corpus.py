"""The default training corpus: folk tunes that music21's wheel ships as ABC, turned into NoteSequences.

No download is needed. The NoteSequences are built straight from music21's note lists (music21's own
MIDI export fails on about 20 % of O'Neill's tunes), one tune per job so both cores stay busy, and the
result is cached as a TFRecord keyed by corpus names and music21 version.

Licences: the tune books (O'Neill 1850, Aird 1778-82, Ryan 1883) are public domain, but music21's ABC
encodings carry music21's corpus licence (educational/non-commercial use). Essen's licence is
non-commercial only, so it is opt-in and never part of the default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pathlib
import re
import shutil
import warnings

from attnrnn_lib._note_seq import music_pb2

from attnrnn_lib import tfrecord
from attnrnn_lib.errors import UsageError
from attnrnn_lib.parallel import ordered_map, usable_cores

log = logging.getLogger("attnrnn")

DEFAULT_CORPORA = ("oneills1850", "airdsAirs", "ryansMammoth")
KNOWN_CORPORA = DEFAULT_CORPORA + ("essenFolksong", "miscFolk")
FORMAT_VERSION = 1  # bump when the conversion below changes, so stale caches are rebuilt
DEFAULT_QPM = 120.0


def cache_dir() -> pathlib.Path:
    """``$ATTNRNN_CACHE``, else ``~/.cache/attnrnn``."""
    return pathlib.Path(os.environ.get("ATTNRNN_CACHE") or pathlib.Path.home() / ".cache" / "attnrnn")


def parse_corpus_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in KNOWN_CORPORA]
    if bad or not names:
        raise UsageError(f"--music21_corpus: unknown corpus {', '.join(bad) or repr(text)} "
                         f"(choose from {', '.join(KNOWN_CORPORA)})")
    return names


def corpus_files(name: str) -> list[pathlib.Path]:
    import music21

    root = pathlib.Path(music21.__file__).parent / "corpus" / name
    return sorted(root.glob("*.abc"))


def split_tunebook(text: str) -> list[tuple[str, str]]:
    """(tune number, ABC text) of every ``X:`` tune in a tune book, each with the book's header prepended."""
    parts = re.split(r"(?m)^(?=X:)", text)
    header, tunes = (parts[0], parts[1:]) if parts and not parts[0].startswith("X:") else ("", parts)
    header = "\n".join(line for line in header.splitlines() if re.match(r"^[A-Za-z]:", line) is None
                       or line[:2] in ("M:", "L:", "K:", "Q:"))
    out = []
    for t in tunes:
        number = t.split("\n", 1)[0][2:].strip() or str(len(out) + 1)
        out.append((number, (header + "\n" if header.strip() else "") + t))
    return out


@dataclasses.dataclass(frozen=True)
class _Tune:
    corpus: str
    book: str
    number: str
    abc: str


def score_to_note_sequence(score) -> music_pb2.NoteSequence:
    """A music21 score -> NoteSequence at its first tempo (120 qpm if none), repeats expanded where possible."""
    try:
        expanded = score.expandRepeats()
    except Exception:  # unbalanced repeat marks are common in folk ABC; the unexpanded tune is still music
        score = score.stripTies()      # a copy: the caller's score is left as it was
    else:
        expanded.stripTies(inPlace=True)  # expandRepeats always returns a new score: no second copy needed
        score = expanded
    marks = list(score.recurse().getElementsByClass("MetronomeMark"))
    qpm = float(marks[0].getQuarterBPM() or DEFAULT_QPM) if marks else DEFAULT_QPM
    sec = 60.0 / qpm
    seq = music_pb2.NoteSequence(ticks_per_quarter=220)
    seq.tempos.add(time=0.0, qpm=qpm)
    # flatten() drops some measure-level time signatures; offsets in the hierarchy keep them all.
    last = None
    for ts in score.recurse().getElementsByClass("TimeSignature"):
        t, sig = float(ts.getOffsetInHierarchy(score)) * sec, (ts.numerator, ts.denominator)
        if sig != last and (not seq.time_signatures or t > seq.time_signatures[-1].time):
            seq.time_signatures.add(time=t, numerator=sig[0], denominator=sig[1])
            last = sig
    flat = score.flatten()
    for n in flat.notes:
        ql = float(n.duration.quarterLength)
        if ql <= 0:  # grace notes
            continue
        start = float(n.offset) * sec
        for p in n.pitches:
            seq.notes.add(pitch=int(p.midi), velocity=100, start_time=start, end_time=start + ql * sec)
    seq.total_time = max((n.end_time for n in seq.notes), default=0.0)
    return seq


@contextlib.contextmanager
def _no_beaming():
    """music21's ABC reader beams every measure, about a third of its parsing time; a NoteSequence has no beams."""
    from music21 import stream

    make_beams = stream.Stream.makeBeams
    stream.Stream.makeBeams = lambda self, *, inPlace=False, **kwargs: None if inPlace else self
    try:
        yield
    finally:
        stream.Stream.makeBeams = make_beams


def _convert_tune(tune: _Tune) -> tuple[bytes | None, str]:
    import music21

    try:
        with warnings.catch_warnings(), _no_beaming():
            warnings.simplefilter("ignore")
            score = music21.converter.parse(tune.abc, format="abc")
            seq = score_to_note_sequence(score)
    except Exception as e:
        return None, f"music21 could not parse it ({type(e).__name__})"
    if not seq.notes:
        return None, "no notes"
    name = f"{tune.book}#{tune.number}"
    seq.collection_name = tune.corpus
    seq.filename = name
    seq.id = f"/id/music21/{tune.corpus}/{hashlib.sha1(name.encode()).hexdigest()}"
    title = score.metadata.title if getattr(score, "metadata", None) else None
    if title:
        seq.sequence_metadata.title = str(title)
    return seq.SerializeToString(), ""


def _tunes(names: tuple[str, ...], max_files: int | None) -> list[_Tune]:
    tunes = []
    for name in names:
        for path in corpus_files(name)[:max_files]:
            text = path.read_text(encoding="utf-8", errors="replace")
            tunes += [_Tune(name, path.name, num, abc) for num, abc in split_tunebook(text)]
    return tunes


def build_corpus(names: tuple[str, ...] = DEFAULT_CORPORA, output_file: str | None = None,
                 num_workers: int | None = None, max_files: int | None = None, overwrite: bool = False,
                 use_cache: bool = True) -> tuple[str, dict]:
    """Builds (or takes from the cache) a NoteSequence TFRecord of the named music21 corpora.

    Args:
      names: corpus folder names inside music21 (see KNOWN_CORPORA).
      output_file: where to put the TFRecord; None = the cache file itself.
      max_files: only the first N ABC files of each corpus (quick tries, tests).
    Returns:
      (path of the TFRecord, report dict with tunes/converted/skipped counts and skip reasons).
    """
    import music21

    key = f"{'+'.join(names)}_m21-{music21.__version__}_v{FORMAT_VERSION}" + (f"_first{max_files}" if max_files else "")
    cached = cache_dir() / f"music21_{key}.tfrecord"
    report: dict = {"cache": str(cached)}
    if not (use_cache and cached.exists()):
        tunes = _tunes(names, max_files)
        cached.parent.mkdir(parents=True, exist_ok=True)
        skipped: dict[str, int] = {}
        n_ok = 0
        with tfrecord.AtomicTFRecordWriter(cached, overwrite=True) as w:
            for tune, (rec, reason) in zip(tunes, ordered_map(_convert_tune, tunes, num_workers or usable_cores(),
                                                              desc="parsing tunes", unit="tune")):
                if rec is None:
                    skipped[reason] = skipped.get(reason, 0) + 1
                    log.warning("skipped %s/%s#%s: %s", tune.corpus, tune.book, tune.number, reason)
                    continue
                n_ok += 1
                w.write(rec)
        report.update(tunes=len(tunes), converted=n_ok, skipped=skipped, built=True)
    else:
        report.update(converted=len(tfrecord.read_records(cached)), built=False)
    if output_file is None:
        return str(cached), report
    if os.path.exists(output_file) and not overwrite:
        raise UsageError(f"--output_file: {output_file} already exists (pass --overwrite to replace it)")
    tmp = output_file + ".tmp"
    shutil.copyfile(cached, tmp)
    os.replace(tmp, output_file)
    return output_file, report


def default_dataset(num_workers: int | None = None, max_files: int | None = None) -> tuple[str, str]:
    """The default training data (the three music21 tune books, 10 % eval, seed 0), built once into the cache.

    Args:
      max_files: only the first N ABC files of each book (a small dataset for quick tries and smoke runs).
    Returns:
      (training file, eval file) paths of SequenceExample TFRecords.
    """
    from attnrnn_lib import dataset

    notes, _ = build_corpus(DEFAULT_CORPORA, num_workers=num_workers, max_files=max_files)
    out = pathlib.Path(notes).with_suffix("").as_posix() + "_dataset"
    paths = (os.path.join(out, dataset.TRAIN_FILE), os.path.join(out, dataset.EVAL_FILE))
    if not all(os.path.exists(p) for p in paths):
        log.info("building the default dataset in %s (once)", out)
        dataset.create_dataset(tfrecord.read_records(notes), out, eval_ratio=0.1, seed=0,
                               num_workers=num_workers, overwrite=True)
    return paths

"""Melodies in and out: primers from text or MIDI, melodies to MIDI, audio and files that never overwrite.

Output MIDI is Magenta's (SPEC §5.6): velocity 100, instrument 0, program 0, the run's tempo, 220 ticks per
quarter; a note lasts until the next note-off or note-on, or the end of the melody.
"""

from __future__ import annotations

import ast
import collections
import io
import math
import os
import tempfile
import wave

import numpy as np
import pretty_midi

from attnrnn_lib import MAX_NOTE, MIN_NOTE, STEPS_PER_QUARTER, encoding, melodies, midi_io
from attnrnn_lib.encoding import NO_EVENT, NOTE_OFF
from attnrnn_lib.errors import UsageError

SAMPLE_RATE = 22050
START_MODES = ("magenta", "next_step")


def parse_primer_melody(text: str) -> list[int]:
    """'[60, -2, 62]' -> [60, -2, 62]: a Python list of ints in -2..127, read without eval."""
    example = '(expected e.g. "[60, -2, 62]")'
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise UsageError(f"--primer_melody: not a Python list of ints: {text!r} {example}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                       for v in value):
        raise UsageError(f"--primer_melody: not a Python list of ints: {text!r} {example}")
    bad = [v for v in value if not NO_EVENT <= v <= 127]
    if bad:
        raise UsageError(f"--primer_melody: event {bad[0]} is outside -2 (no event), -1 (note off), 0..127")
    if not value:
        raise UsageError(f"--primer_melody: the list is empty {example}")
    return list(value)


def primer_from_midi(path: str) -> tuple[list[int], float | None]:
    """The one melody of a MIDI file as events from step 0, and its first tempo (SPEC §5.2).

    Polyphony is allowed (the highest of simultaneous onsets is kept); notes on several instruments are not,
    as in Magenta, whose extraction asserts a single melody.
    """
    flag = "--primer_midi"
    if not os.path.isfile(path):
        raise UsageError(f"{flag}: no such file: {path}")
    try:
        with open(path, "rb") as f:
            sequence = midi_io.midi_bytes_to_note_sequence(f.read())
    except OSError as e:
        raise UsageError(f"{flag}: cannot read {path} ({e.strerror})") from None
    except midi_io.UnreadableFile as e:
        raise UsageError(f"{flag}: {path}: {e}") from None
    qpm = sequence.tempos[0].qpm if sequence.tempos else None
    rules = melodies.ExtractionRules(min_bars=0, min_unique_pitches=1, gap_bars=math.inf,
                                     ignore_polyphonic_notes=True, max_steps_truncate=0)
    pieces = melodies.quantize_pieces(sequence, rules, collections.Counter())
    notes = [n for n in (pieces[0].notes if pieces else []) if n.velocity and not n.is_drum]
    if not notes:
        raise UsageError(f"{flag}: {path} has no (non-drum) notes to use as a primer")
    if len({n.instrument for n in notes}) > 1:
        raise UsageError(f"{flag}: {path} has notes on {len({n.instrument for n in notes})} instruments; a primer "
                         "is one melody (keep one track)")
    spb = int(rules.steps_per_quarter * 4)
    playable = sorted(((n.quantized_start_step, n.quantized_end_step, n.pitch) for n in notes),
                      key=lambda n: (n[0], -n[2]))
    origin = playable[0][0] - playable[0][0] % spb
    events = melodies.melody_from_notes(playable, origin, math.inf, True)
    return [NO_EVENT] * origin + events, qpm


def to_notes(events) -> list[tuple[int, int, int]]:
    """Events from step 0 -> notes (start step, end step, pitch); a note lasts until the next note-off or note-on."""
    notes, pitch, start = [], None, 0
    for step, event in enumerate(list(events) + [NOTE_OFF]):
        if event != NO_EVENT and pitch is not None:
            notes.append((start, step, pitch))
            pitch = None
        if event >= 0:
            pitch, start = event, step
    return notes


def to_pretty_midi(events: list[int], qpm: float = 120.0) -> pretty_midi.PrettyMIDI:
    """Events from step 0 (16th notes) -> a one-instrument PrettyMIDI at `qpm`."""
    seconds = 60.0 / qpm / STEPS_PER_QUARTER
    pm = pretty_midi.PrettyMIDI(resolution=220, initial_tempo=qpm)
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(100, p, s * seconds, e * seconds) for s, e, p in to_notes(events)]
    pm.instruments.append(piano)
    return pm


def render_audio(pm: pretty_midi.PrettyMIDI, on_fallback=None) -> np.ndarray:
    """Audio samples at SAMPLE_RATE: FluidSynth with pretty_midi's General MIDI soundfont when the fluidsynth
    library is installed, otherwise a plain sine rendering (always available, no extra dependency)."""
    try:
        audio = pm.fluidsynth(fs=SAMPLE_RATE)
    except Exception:  # pyfluidsynth / libfluidsynth missing
        if on_fallback:
            on_fallback()
        audio = pm.synthesize(fs=SAMPLE_RATE)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return (audio / peak * 0.8 if peak > 0 else audio).astype(np.float32)


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def midi_bytes(pm: pretty_midi.PrettyMIDI) -> bytes:
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()


def write_new_file(path: str, data: bytes) -> None:
    """Writes `data` to a temp file beside `path`, then links it into place; never replaces an existing file."""
    write_new_files({path: data})


def write_new_files(files: dict[str, bytes]) -> None:
    """Writes all of `files` or none: each goes to a temp file first, and only when every one of them is
    complete are they linked into place. A full disk, or an existing file (never replaced), leaves nothing.

    Raises:
      UsageError: one of the paths already exists.
      OSError: writing failed (disk full, file too large...); nothing was left behind.
    """
    temps, linked = {}, []
    try:
        for path, data in files.items():
            fd, temps[path] = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(temps[path], 0o644)     # mkstemp makes files private; outputs are ordinary files
        for path, tmp in temps.items():
            os.link(tmp, path)               # fails with FileExistsError instead of overwriting
            linked.append(path)
    except BaseException as e:
        for path in linked:
            os.unlink(path)
        if isinstance(e, FileExistsError):
            raise UsageError(f"--output_dir: {e.filename2 or e.filename} already exists; not overwriting it") from None
        raise
    finally:
        for tmp in temps.values():
            os.unlink(tmp)


def prepare_primer(events: list[int] | None, num_steps: int, start: str = "magenta",
                   rng: np.random.Generator | None = None) -> list[int]:
    """The melody the model is fed before sampling (SPEC §5.2/§5.3), in the primer's own register.

    No primer: one random note from the model's range (Magenta's 2016 behaviour; seeded by `rng`).
    The last note is ended with a NOTE_OFF and the melody padded with NO_EVENTs up to the start step.

    Raises:
      UsageError: the primer reaches past `num_steps`, or an unknown `start`.
    """
    if start not in START_MODES:
        raise UsageError(f"--start: must be one of {', '.join(START_MODES)}, got {start!r}")
    if not events:
        rng = rng or np.random.default_rng(0)
        events = [int(rng.integers(MIN_NOTE, MAX_NOTE))]
    events = [int(e) for e in events]
    onsets = [i for i, e in enumerate(events) if e >= 0]
    if not onsets:
        return [encoding.NO_EVENT]          # Magenta: an empty melody one step before the start step
    # Where the last note ends: at the next NOTE_OFF / note-on after it, else at the end of the primer.
    last = onsets[-1]
    end = next((i for i in range(last + 1, len(events)) if events[i] != encoding.NO_EVENT), len(events))
    fed = [encoding.NO_EVENT if (e == encoding.NOTE_OFF and i < onsets[0]) else e for i, e in enumerate(events[:end])]
    start_step = end + (2 if start == "magenta" else 1)
    if start_step >= num_steps:
        raise UsageError(f"--num_steps: the primer ends at step {end}, so generation would start at step "
                         f"{start_step}, but only {num_steps} steps were requested (Magenta: 'Priming sequence is "
                         f"longer than the total number of steps requested')")
    fed.append(encoding.NOTE_OFF)
    return fed + [encoding.NO_EVENT] * (start_step - len(fed))

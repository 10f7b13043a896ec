"""NoteSequence -> quantised pieces -> monophonic melodies, with Magenta's attention_rnn rules (SPEC §1.3-1.6).

Quantisation and time-change splitting are note-seq's. Extraction and squashing are ours: the same rules as
note-seq's ``Melody.from_quantized_sequence`` / ``Melody.squash`` (tested against them as oracles), on plain
integer lists, which is about 10x faster than note-seq's per-note list surgery.

Every sequence or melody that is dropped is counted under a named reason, with the names Magenta prints
(``melodies_discarded_too_short`` …), so a user can see why a file gave no training data.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses

import numpy as np
from attnrnn_lib._note_seq import music_pb2, sequences_lib

from attnrnn_lib import MAX_NOTE, MIN_NOTE, STEPS_PER_QUARTER


@dataclasses.dataclass(frozen=True)
class ExtractionRules:
    """Magenta's attention_rnn pipeline arguments (melody_rnn_pipeline + extract_melodies)."""

    steps_per_quarter: int = STEPS_PER_QUARTER
    min_bars: int = 7
    max_steps_truncate: int = 512
    min_unique_pitches: int = 5
    gap_bars: float = 1.0
    ignore_polyphonic_notes: bool = False
    filter_drums: bool = True
    min_note: int = MIN_NOTE
    max_note: int = MAX_NOTE
    transpose_to_key: int = 0


def length_buckets(min_bars: int) -> list[int]:
    """Lower bounds of the ``melody_lengths_in_bars`` histogram buckets, as Magenta builds them."""
    return sorted({0, 1, 10, 20, 30, 40, 50, 100, 200, 500, min_bars // 2, min_bars, min_bars + 1, min_bars - 1})


def bucket_name(bars: int, buckets: list[int]) -> str:
    lower = [b for b in buckets if b <= bars][-1]
    upper = [b for b in buckets if b > bars]
    return f"melody_lengths_in_bars_[{lower},{upper[0] if upper else 'inf'})"


NO_EVENT = -2
NOTE_OFF = -1


def _has_time_changes(sequence: music_pb2.NoteSequence) -> bool:
    """True if splitting could cut anything: a second distinct tempo or time signature."""
    qpms = {t.qpm for t in sequence.tempos}
    sigs = {(t.numerator, t.denominator) for t in sequence.time_signatures}
    return len(qpms) > 1 or len(sigs) > 1 or any(t.time > 0 for t in sequence.time_signatures)


def quantize_pieces(sequence: music_pb2.NoteSequence, rules: ExtractionRules,
                    stats: collections.Counter) -> list[music_pb2.NoteSequence]:
    """Splits at tempo/time-signature changes and quantises each piece; failures are counted, not raised."""
    # note-seq's splitter deep-copies every note even when there is nothing to split; skip it then.
    pieces = sequences_lib.split_note_sequence_on_time_changes(sequence) if _has_time_changes(sequence) \
        else [sequence]
    quantized = []
    for piece in pieces:
        try:
            q = sequences_lib.quantize_note_sequence(piece, rules.steps_per_quarter)
        except sequences_lib.MultipleTimeSignatureError:
            stats["sequences_discarded_because_multiple_time_signatures"] += 1
            continue
        except sequences_lib.MultipleTempoError:
            stats["sequences_discarded_because_multiple_tempos"] += 1
            continue
        except sequences_lib.BadTimeSignatureError:
            stats["sequences_discarded_because_bad_time_signature"] += 1
            continue
        except sequences_lib.NegativeTimeError:  # Magenta crashes here; we count and go on
            stats["sequences_discarded_because_negative_time"] += 1
            continue
        if any(not n.is_drum and not 0 <= n.pitch <= 127 for n in q.notes):
            stats["skipped_due_to_range_exceeded"] += 1
            continue
        stats["transpositions_generated"] += 1
        quantized.append(q)
    return quantized


class PolyphonyError(Exception):
    """Two notes of one instrument start on the same step (and polyphony is not ignored)."""


def melody_from_notes(notes: list[tuple[int, int, int]], origin: int, gap_steps: float,
                      ignore_polyphonic_notes: bool) -> list[int]:
    """One monophonic melody from notes (start, end, pitch), sorted by (start, -pitch), starting at `origin`.

    Drums and silent notes must already be removed. A note starting while the previous one sounds cuts it
    short; a silence of `gap_steps` after a note-off ends the melody; a trailing note-off is dropped.
    Raises:
      PolyphonyError: two notes start together and `ignore_polyphonic_notes` is False.
    """
    events: list[int] = []
    last_on = last_off = -1
    for start, end, pitch in notes:
        s, e = start - origin, end - origin
        if events:
            if s == last_on:
                if ignore_polyphonic_notes:
                    continue
                raise PolyphonyError
            if s - last_off >= gap_steps:
                break
        if s < len(events):
            del events[s:]
        else:
            events.extend([NO_EVENT] * (s - len(events)))
        events.append(pitch)
        events.extend([NO_EVENT] * (e - s - 1))
        events.append(NOTE_OFF)
        last_on, last_off = s, e
    if events and events[-1] == NOTE_OFF:
        events.pop()
    return events


def extract_melodies(quantized: music_pb2.NoteSequence, rules: ExtractionRules,
                     stats: collections.Counter) -> list[list[int]]:
    """Every melody of every instrument of one quantised piece that passes Magenta's filters.

    Per instrument, melodies are read one after another (a gap of `gap_bars` of silence ends one); a
    polyphonic onset abandons the rest of that instrument; too-short and too-few-pitch melodies are
    dropped; long ones are truncated (the rest of that melody is lost, as in Magenta).
    """
    if not quantized.notes:
        return []
    spb_float = sequences_lib.steps_per_bar_in_quantized_sequence(quantized)
    if spb_float % 1:
        stats["non_integer_steps_per_bar"] += 1  # the whole piece is skipped, as Magenta does
        return []
    steps_per_bar = int(spb_float)
    buckets = length_buckets(rules.min_bars)
    by_instrument: dict[int, list] = collections.defaultdict(list)
    for n in quantized.notes:
        by_instrument[n.instrument].append(n)
    melodies = []
    for instrument in sorted(by_instrument):
        notes = sorted(by_instrument[instrument], key=lambda n: (n.quantized_start_step, -n.pitch))
        starts = [n.quantized_start_step for n in notes]
        playable = [(n.quantized_start_step, n.quantized_end_step, n.pitch) for n in notes
                    if n.velocity and not (rules.filter_drums and n.is_drum)]
        playable_starts = [p[0] for p in playable]
        search_start = 0
        while True:
            first_index = bisect.bisect_left(starts, search_start)
            if first_index == len(starts):
                break  # no notes left at all (drums included): note-seq returns an empty melody
            # Drums and silent notes still decide where the melody's first bar starts (note-seq sorts them in).
            first_any = starts[first_index]
            origin = first_any - (first_any - search_start) % steps_per_bar
            rest = playable[bisect.bisect_left(playable_starts, search_start):]
            try:
                events = melody_from_notes(rest, origin, rules.gap_bars * steps_per_bar,
                                           rules.ignore_polyphonic_notes)
            except PolyphonyError:
                stats["polyphonic_tracks_discarded"] += 1
                break
            end = origin + len(events) if events else 0
            search_start = end + (-end) % steps_per_bar  # next bar line after the untruncated melody
            if not events:
                break
            if len(events) < steps_per_bar * rules.min_bars:
                stats["melodies_discarded_too_short"] += 1
                continue
            if rules.max_steps_truncate and len(events) > rules.max_steps_truncate:
                events = events[:rules.max_steps_truncate]
                stats["melodies_truncated"] += 1
            ev = np.asarray(events)
            if np.unique(ev[ev >= 0] % 12).size < rules.min_unique_pitches:
                stats["melodies_discarded_too_few_pitches"] += 1
                continue
            stats[bucket_name(len(events) // steps_per_bar, buckets)] += 1
            melodies.append(events)
    return melodies


def squash(events: list[int], rules: ExtractionRules = ExtractionRules()) -> tuple[list[int], int]:
    """Transposes towards `transpose_to_key` and the centre of [min_note, max_note), folding octaves.

    Returns:
      (new events, transpose amount) — the amount is what generation undoes afterwards.
    """
    ev = np.asarray(events, dtype=np.int64)
    on = ev >= 0
    if not on.any():
        return list(events), 0
    pcs = np.bincount(ev[on] % 12, minlength=12)
    key = int(np.argmax(_KEY_MEMBERS @ pcs))  # ties -> lowest key index
    key_diff = rules.transpose_to_key - key
    center = (ev[on].min() + ev[on].max()) / 2.0
    target = (rules.min_note + rules.max_note - 1) / 2.0
    amount = key_diff + 12 * int(round((target - (center + key_diff)) / 12.0))
    return transpose(events, amount, rules.min_note, rules.max_note), amount


def transpose(events: list[int], amount: int, min_note: int = 0, max_note: int = 128) -> list[int]:
    """Adds `amount` to every note-on, folding octaves into [min_note, max_note)."""
    ev = np.asarray(events, dtype=np.int64)
    on = ev >= 0
    p = ev[on] + amount
    p = np.where(p < min_note, min_note + (p - min_note) % 12,
                 np.where(p >= max_note, max_note - 12 + (p - max_note) % 12, p))
    ev = ev.copy()
    ev[on] = p
    return ev.tolist()


# _KEY_MEMBERS[k, pc] = 1 if pitch class pc is in the major scale of key k.
_KEY_MEMBERS = np.array([[1 if (pc - k) % 12 in (0, 2, 4, 5, 7, 9, 11) else 0 for pc in range(12)]
                         for k in range(12)])


def melodies_from_sequence(sequence: music_pb2.NoteSequence, rules: ExtractionRules,
                           stats: collections.Counter) -> list[list[int]]:
    """The whole per-NoteSequence chain: split, quantise, extract, squash. Returns event lists."""
    out = []
    for q in quantize_pieces(sequence, rules, stats):
        out += [squash(m, rules)[0] for m in extract_melodies(q, rules, stats)]
    return out

"""Melody extraction and squashing: identical to note-seq's Melody (Magenta's building block) on real MIDI."""

import collections

import note_seq
import numpy as np
import pytest
from note_seq import midi_io, sequences_lib
from note_seq.melodies_lib import PolyphonicMelodyError

from attnrnn_lib import melodies as M
from tests.conftest import scale_melody, write_midi

RULES = M.ExtractionRules()


def reference_melodies(quantized):
    """Magenta's extract_melodies loop (SPEC §1.5) driven by note-seq's own Melody, then squash."""
    out = []
    spb = int(sequences_lib.steps_per_bar_in_quantized_sequence(quantized))
    for instrument in sorted({n.instrument for n in quantized.notes}):
        start = 0
        while True:
            m = note_seq.Melody()
            try:
                m.from_quantized_sequence(quantized, instrument=instrument, search_start_step=start, gap_bars=1.0,
                                          ignore_polyphonic_notes=False, pad_end=False, filter_drums=True)
            except PolyphonicMelodyError:
                break
            start = m.end_step + (-m.end_step) % spb
            if not m:
                break
            if len(m) < spb * 7:
                continue
            if len(m) > 512:
                m.set_length(512)
            if np.count_nonzero(m.get_note_histogram()) < 5:
                continue
            m.squash(48, 84, 0)
            out.append(list(m))
    return out


def _pieces(path):
    ns = midi_io.midi_file_to_note_sequence(str(path))
    for piece in sequences_lib.split_note_sequence_on_time_changes(ns):
        try:
            yield sequences_lib.quantize_note_sequence(piece, 4)
        except sequences_lib.QuantizationStatusError:
            continue


@pytest.mark.parametrize("fixture, count", [("nottingham_full", 250), ("irish_midi", 250)])
def test_extraction_matches_note_seq_on_real_midi(request, fixture, count):
    files = sorted(request.getfixturevalue(fixture).glob("*.mid"))[:count]
    pieces = melodies_found = 0
    for f in files:
        for q in _pieces(f):
            ours = [M.squash(m)[0] for m in M.extract_melodies(q, RULES, collections.Counter())]
            assert ours == reference_melodies(q), f.name
            pieces += 1
            melodies_found += len(ours)
    assert pieces >= count and melodies_found > count * 0.8


def test_squash_matches_note_seq_and_returns_the_transpose_amount():
    rng = np.random.default_rng(3)
    for _ in range(500):
        n = int(rng.integers(1, 60))
        ev = np.where(rng.random(n) < 0.5, -2, rng.integers(20, 110, n)).tolist()
        ref = note_seq.Melody(list(ev))
        amount = ref.squash(48, 84, 0)
        assert M.squash(ev) == (list(ref), amount)
    # SPEC §1.6 examples: a G-major line 67..79 moves down 7; C major 60..72 stays.
    g_major = [67, 69, 71, 72, 74, 76, 78, 79]
    assert M.squash(g_major)[1] == -7
    assert M.squash([60, 62, 64, 65, 67, 69, 71, 72])[1] == 0


def _quantized(path):
    return [q for q in _pieces(path)]


def test_chord_track_is_discarded_and_melody_track_kept(tmp_path):
    melody = scale_melody(bars=8)
    chords = [(p, i * 2.0, i * 2.0 + 2.0) for i in range(8) for p in (48, 52, 55)]
    path = write_midi(tmp_path / "poly.mid", [melody, chords])
    stats = collections.Counter()
    (q,) = _quantized(path)
    found = M.extract_melodies(q, RULES, stats)
    assert len(found) == 1 and stats["polyphonic_tracks_discarded"] == 1
    assert found[0][:3] == [60, -2, 62]


def test_drum_track_is_ignored(tmp_path):
    drums = [(36, i * 0.5, i * 0.5 + 0.1) for i in range(64)]
    path = write_midi(tmp_path / "drums.mid", [scale_melody(bars=8), drums], drums=(1,))
    stats = collections.Counter()
    (q,) = _quantized(path)
    assert len(M.extract_melodies(q, RULES, stats)) == 1
    assert stats["polyphonic_tracks_discarded"] == 0


def test_pickup_bar_starts_the_melody_on_the_bar_line(tmp_path):
    # A pickup note on the last beat of bar 0 (t = 1.5 s at 120 qpm = step 12): the melody starts at step 0.
    path = write_midi(tmp_path / "pickup.mid", [[(59, 1.5, 2.0)] + scale_melody(bars=8, start=2.0)])
    (q,) = _quantized(path)
    (mel,) = M.extract_melodies(q, RULES, collections.Counter())
    assert mel[:12] == [-2] * 12 and mel[12] == 59


def test_tempo_change_splits_the_sequence(tmp_path):
    path = write_midi(tmp_path / "tempo.mid", [scale_melody(bars=16)], tempo_changes=[(0.0, 120.0), (16.0, 90.0)])
    ns = midi_io.midi_file_to_note_sequence(str(path))
    stats = collections.Counter()
    pieces = M.quantize_pieces(ns, RULES, stats)
    assert len(ns.tempos) == 2 and len(pieces) == 2 and stats["transpositions_generated"] == 2


def test_gap_of_a_bar_ends_a_melody_and_short_ones_are_counted(tmp_path):
    first = scale_melody(bars=8)
    second = scale_melody(bars=3, start=16.0 + 2.0)  # one silent bar (2 s) later, too short
    path = write_midi(tmp_path / "gap.mid", [first + second])
    stats = collections.Counter()
    (q,) = _quantized(path)
    assert len(M.extract_melodies(q, RULES, stats)) == 1
    assert stats["melodies_discarded_too_short"] == 1


def test_long_melody_is_truncated_to_512_steps(tmp_path):
    path = write_midi(tmp_path / "long.mid", [scale_melody(bars=40)])
    stats = collections.Counter()
    (q,) = _quantized(path)
    (mel,) = M.extract_melodies(q, RULES, stats)
    assert len(mel) == 512 and stats["melodies_truncated"] == 1


def test_too_few_pitch_classes(tmp_path):
    notes = [(60 + 12 * (i % 2), i * 0.5, i * 0.5 + 0.5) for i in range(32)]  # only C, in two octaves
    path = write_midi(tmp_path / "few.mid", [notes])
    stats = collections.Counter()
    (q,) = _quantized(path)
    assert M.extract_melodies(q, RULES, stats) == []
    assert stats["melodies_discarded_too_few_pitches"] == 1


def test_fast_path_without_time_changes_equals_note_seq_split(nottingham_full):
    for f in sorted(nottingham_full.glob("*.mid"))[:60]:
        ns = midi_io.midi_file_to_note_sequence(str(f))
        ours = M.quantize_pieces(ns, RULES, collections.Counter())
        ref = [sequences_lib.quantize_note_sequence(p, 4) for p in sequences_lib.split_note_sequence_on_time_changes(ns)]
        # The splitter re-sorts notes by time; extraction sorts them itself, so compare as sorted lists.
        def notes(qs):
            return [sorted((n.pitch, n.quantized_start_step, n.quantized_end_step, n.instrument) for n in q.notes)
                    for q in qs]

        assert notes(ours) == notes(ref), f.name

"""The 74/40 encoding: bit-exact with note-seq's KeyMelodyEncoderDecoder(48, 84) on a Melody."""

import note_seq
import numpy as np
import pytest

from attnrnn_lib import encoding as E

ORACLE = note_seq.KeyMelodyEncoderDecoder(min_note=48, max_note=84)
# note-seq's own test melody (SPEC §2.3): positions 0..35.
WORKED = [48, -2, 49, 83, -1] + [-2] * 11 + [48, -1] + [-2] * 14 + [48, -1, 49, 82]


def oracle(events):
    inputs, labels = ORACLE.encode(note_seq.Melody(list(events)))
    return np.asarray(inputs, np.float32).reshape(-1, E.INPUT_SIZE), np.asarray(labels, np.int64)


def _bits(s):
    return [i for i, c in enumerate(s) if c == "1"]


@pytest.mark.parametrize("p, pitch, flags, direction, repeats, counter, bar, key1, key2", [
    # position, pitch dims, (playing silence attack), direction, (rep16 rep32), counter LSB first, bar, keys
    (16, [0], "101", -1, "10", "1000100", 0, "110000011000", "111010111101"),
    (17, [], "011", -1, "00", "0100100", 0, "110000011000", "111010111101"),
    (32, [0], "101", -1, "11", "1000010", 0, "110000011000", "111010111101"),
    (33, [], "011", -1, "10", "0100010", 0, "110000011000", "111010111101"),
    (34, [1], "101", 1, "01", "1100010", 0, "010000001000", "111010111101"),
    (35, [34], "101", 1, "00", "0010010", 0, "010000001000", "010000001000"),
])
def test_worked_vectors_from_spec(p, pitch, flags, direction, repeats, counter, bar, key1, key2):
    expected = np.zeros(74, np.float32)
    expected[pitch] = 1
    expected[36:39] = [int(c) for c in flags]
    expected[39] = direction
    expected[40:42] = [int(c) for c in repeats]
    expected[42:49] = [1 if c == "1" else -1 for c in counter]
    expected[49] = bar
    expected[50 + np.array(_bits(key1), int)] = 1
    expected[62 + np.array(_bits(key2), int)] = 1
    np.testing.assert_array_equal(E.encode_inputs(WORKED)[p], expected)


def test_worked_melody_matches_note_seq_and_spec_readings():
    inputs, labels = E.encode(WORKED)
    ref_in, ref_lab = oracle(WORKED)
    np.testing.assert_array_equal(inputs, ref_in)
    np.testing.assert_array_equal(labels, ref_lab)
    assert inputs.shape == (35, 74) and labels.dtype == np.int64
    full = E.encode_inputs(WORKED)
    assert full[1, 0] == 1 and full[1, 38] == 0  # held note: pitch set, no attack
    assert full[4, 37] == 1 and full[4, 38] == 1  # NOTE_OFF keeps the attack flag
    assert full[15, 49] == 1 and list(full[15, 42:49]) == [-1, -1, -1, -1, 1, -1, -1]


def _random_melodies(rng, count):
    for i in range(count):
        n = int(rng.integers(1, 300))
        style = i % 4
        if style == 0:  # uniform over every event
            ev = rng.choice([-2, -1] + list(range(48, 84)), size=n)
        elif style == 1:  # realistic: mostly holds, a few note-offs
            ev = np.where(rng.random(n) < 0.6, -2, np.where(rng.random(n) < 0.2, -1, rng.integers(48, 84, n)))
        elif style == 2:  # few distinct pitches: many repeats and lookback hits
            ev = rng.choice([-2, -2, -1, 60, 62, 64, 72], size=n)
        else:  # a repeated bar pattern with leading note-offs
            bar = rng.choice([-2, -1, 55, 67, 79], size=16)
            ev = np.concatenate([[-1, -1, -2], np.tile(bar, n // 16 + 1)[:n]])
        yield [int(x) for x in ev]


def test_bit_exact_with_note_seq_on_a_thousand_random_melodies():
    rng = np.random.default_rng(1234)
    checked = 0
    for events in _random_melodies(rng, 1000):
        inputs, labels = E.encode(events)
        ref_in, ref_lab = oracle(events)
        assert np.array_equal(inputs, ref_in), events
        assert np.array_equal(labels, ref_lab), events
        checked += 1
    assert checked == 1000


def test_label_classes_follow_lookback_priority():
    ev = [60] + [-2] * 40
    labels = E.encode_labels(ev)
    assert labels[0] == 12  # note-on 60 -> class 60 - 48
    assert (labels[1:32] == E.REPEAT_2_BARS_LABEL).all()  # every early NO_EVENT is "repeat 2 bars"
    assert labels[32] == E.REPEAT_1_BAR_LABEL  # events[32]=NO_EVENT, events[0]=60: repeats 16 back
    assert (labels[33:] == E.REPEAT_2_BARS_LABEL).all()


def test_decode_inverts_encode():
    rng = np.random.default_rng(7)
    for events in _random_melodies(rng, 300):
        _, labels = E.encode(events)
        assert E.decode(labels, E.clean_events(events)[:1]) == E.clean_events(events).tolist()


def test_label_to_event_lookbacks_before_history_are_no_event():
    assert E.label_to_event(E.REPEAT_1_BAR_LABEL, [60] * 15) == E.NO_EVENT
    assert E.label_to_event(E.REPEAT_1_BAR_LABEL, [61] + [60] * 15) == 61
    assert E.label_to_event(3, []) == 51
    with pytest.raises(ValueError):
        E.label_to_event(40, [])


@pytest.mark.parametrize("bad", [[47], [84], [-3], [60, 127]])
def test_events_outside_the_range_are_refused(bad):
    with pytest.raises(ValueError, match="outside"):
        E.encode(bad)


def test_empty_and_single_event_melodies():
    assert E.encode([])[0].shape == (0, 74)
    inputs, labels = E.encode([60])
    assert inputs.shape == (0, 74) and labels.shape == (0,)

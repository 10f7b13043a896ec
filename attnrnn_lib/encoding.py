"""Melody events <-> Magenta's 74-dim inputs and 40 classes, vectorised and exact.

Matches note-seq's ``KeyMelodyEncoderDecoder(min_note=48, max_note=84)`` applied to a ``Melody`` (SPEC §2)
bit for bit, in one O(n) numpy pass instead of note-seq's O(n^2) prefix-by-prefix recomputation.

Events: -2 no event, -1 note-off, 48..83 note-on. Input layout (74 dims):
  0-35 current pitch one-hot | 36 note playing | 37 silence | 38 attack | 39 direction (+1/-1/0)
  40 repeat 1 bar | 41 repeat 2 bars | 42-48 binary counter of p+1 (+1/-1) | 49 next step starts a bar
  50-61 key of the prefix (multi-hot argmax) | 62-73 key of the last 3 distinct pitches.
Classes (40): 0-35 note-on 48+c | 36 no event | 37 note-off | 38 repeat 1 bar | 39 repeat 2 bars.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from attnrnn_lib import MAX_NOTE, MIN_NOTE

NO_EVENT = -2
NOTE_OFF = -1
NUM_PITCHES = MAX_NOTE - MIN_NOTE  # 36
INPUT_SIZE = NUM_PITCHES + 38  # 74
NUM_CLASSES = NUM_PITCHES + 4  # 40
NO_EVENT_LABEL = NUM_PITCHES  # 36: Magenta's default_event_label, used by the event/no-event metrics
NOTE_OFF_LABEL = NUM_PITCHES + 1
REPEAT_1_BAR_LABEL = NUM_PITCHES + 2
REPEAT_2_BARS_LABEL = NUM_PITCHES + 3
LOOKBACKS = (16, 32)  # hard-wired in Magenta whatever the meter (SPEC §2)
STEPS_PER_BAR = 16
COUNTER_BITS = 7

# _IN_KEY[pc, k] = 1 if pitch class pc lies in the major scale of key k.
_IN_KEY = np.zeros((12, 12), np.int32)
for _k in range(12):
    _IN_KEY[[(_k + d) % 12 for d in (0, 2, 4, 5, 7, 9, 11)], _k] = 1

_PITCH, _PLAYING, _SILENCE, _ATTACK, _DIRECTION = 0, NUM_PITCHES, NUM_PITCHES + 1, NUM_PITCHES + 2, NUM_PITCHES + 3
_REPEAT, _COUNTER = NUM_PITCHES + 4, NUM_PITCHES + 6
_BAR_START = _COUNTER + COUNTER_BITS
_KEY_PREFIX = _BAR_START + 1
_KEY_LAST3 = _KEY_PREFIX + 12


def clean_events(events: Sequence[int]) -> np.ndarray:
    """Validates a melody and turns note-offs before the first note-on into no-events (as note-seq's Melody).

    Raises:
      ValueError: an event outside -2, -1, 48..83.
    """
    ev = np.asarray(events, dtype=np.int64).reshape(-1)
    bad = (ev < NOTE_OFF) & (ev != NO_EVENT) | (ev >= 0) & ((ev < MIN_NOTE) | (ev >= MAX_NOTE))
    if bad.any():
        raise ValueError(f"melody event {int(ev[bad][0])} is outside -2, -1 and [{MIN_NOTE}, {MAX_NOTE})")
    onsets = np.nonzero(ev >= 0)[0]
    lead = onsets[0] if onsets.size else ev.size
    ev = ev.copy()
    ev[:lead][ev[:lead] == NOTE_OFF] = NO_EVENT
    return ev


def _majority_keys(hist: np.ndarray) -> np.ndarray:
    """[n, 12] histogram -> [n, 12] 1.0 where the count equals the row maximum (all ones for empty rows)."""
    return (hist == hist.max(axis=1, keepdims=True)).astype(np.float32)


def encode_inputs(events: Sequence[int]) -> np.ndarray:
    """Input vectors for every position of a melody (position p describes events[:p+1]).

    Returns:
      float32 [len(events), 74].
    """
    ev = clean_events(events)
    n = ev.size
    out = np.zeros((n, INPUT_SIZE), np.float32)
    if n == 0:
        return out
    pos = np.arange(n)
    is_on = ev >= 0

    # Current note: the last event that is not NO_EVENT decides (a note-on sets it, a note-off clears it).
    last_change = np.maximum.accumulate(np.where(ev != NO_EVENT, pos, -1))
    current = np.where(last_change >= 0, ev[np.maximum(last_change, 0)], NOTE_OFF)
    sounding = current >= 0
    out[pos[sounding], current[sounding] - MIN_NOTE] = 1.0
    out[:, _PLAYING] = sounding
    out[:, _SILENCE] = ~sounding
    # Attack: set by a note-on, cleared by NO_EVENT, left alone by NOTE_OFF (SPEC §2.1).
    last_set_or_clear = np.maximum.accumulate(np.where(ev != NOTE_OFF, pos, -1))
    out[:, _ATTACK] = (last_set_or_clear >= 0) & is_on[np.maximum(last_set_or_clear, 0)]

    onset_pos = np.nonzero(is_on)[0]
    pitches = ev[onset_pos]  # [k] note-on pitches in order
    k_of_pos = np.cumsum(is_on) - 1  # index of the latest note-on at each position, -1 before the first
    has_on = k_of_pos >= 0
    kp = np.maximum(k_of_pos, 0)
    if pitches.size:
        # Direction: sign of the latest non-zero step between consecutive note-ons.
        step = np.sign(np.diff(pitches, prepend=pitches[0]))
        last_nz = np.maximum.accumulate(np.where(step != 0, np.arange(step.size), -1))
        direction = np.where(last_nz >= 0, step[np.maximum(last_nz, 0)], 0)
        out[:, _DIRECTION] = np.where(has_on, direction[kp], 0)
        # Key of the prefix: cumulative scale-membership counts over all note-ons.
        prefix_hist = np.cumsum(_IN_KEY[pitches % 12], axis=0)  # [k, 12]
        # Key of the last 3 distinct pitches (by latest occurrence), each counted once.
        last_seen = np.full((pitches.size, NUM_PITCHES), -1)
        last_seen[np.arange(pitches.size), pitches - MIN_NOTE] = np.arange(pitches.size)
        last_seen = np.maximum.accumulate(last_seen, axis=0)  # [k, 36]
        third = np.sort(last_seen, axis=1)[:, -3:-2]
        chosen = (last_seen >= third) & (last_seen >= 0)  # [k, 36] the <= 3 most recent distinct pitches
        last3_hist = chosen.astype(np.int32) @ _IN_KEY[(np.arange(NUM_PITCHES) + MIN_NOTE) % 12]
        zeros = np.zeros((1, 12), np.int32)
        out[:, _KEY_PREFIX:_KEY_PREFIX + 12] = _majority_keys(np.concatenate([zeros, prefix_hist])[k_of_pos + 1])
        out[:, _KEY_LAST3:_KEY_LAST3 + 12] = _majority_keys(np.concatenate([zeros, last3_hist])[k_of_pos + 1])
    else:
        out[:, _KEY_PREFIX:_KEY_LAST3 + 12] = 1.0

    for i, d in enumerate(LOOKBACKS):
        out[d:, _REPEAT + i] = ev[d:] == ev[:-d] if n > d else []
    counter = pos + 1
    bits = (counter[:, None] >> np.arange(COUNTER_BITS)) & 1
    out[:, _COUNTER:_COUNTER + COUNTER_BITS] = 2.0 * bits - 1.0
    out[:, _BAR_START] = counter % STEPS_PER_BAR == 0
    return out


def encode_labels(events: Sequence[int]) -> np.ndarray:
    """The class of every event (position p's label is predicted from input p-1).

    Returns:
      int64 [len(events)].
    """
    ev = clean_events(events)
    n = ev.size
    labels = np.where(ev >= 0, ev - MIN_NOTE, np.where(ev == NOTE_OFF, NOTE_OFF_LABEL, NO_EVENT_LABEL))
    # Lookbacks are checked longest first; before a lookback exists the "looked-back" event is NO_EVENT.
    for d, label in ((LOOKBACKS[0], REPEAT_1_BAR_LABEL), (LOOKBACKS[1], REPEAT_2_BARS_LABEL)):
        back = np.full(n, NO_EVENT)
        back[d:] = ev[:-d] if n > d else []
        labels = np.where(ev == back, label, labels)
    return labels.astype(np.int64)


def encode(events: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """A melody of n events -> (inputs float32 [n-1, 74], labels int64 [n-1]), as Magenta's dataset.

    inputs[i] describes events[:i+1]; labels[i] is the class of events[i+1].
    """
    inputs = encode_inputs(events)
    labels = encode_labels(events)
    return inputs[:-1], labels[1:]


def label_to_event(label: int, events: Sequence[int]) -> int:
    """Decodes one class given the events generated so far (the new event's position is len(events))."""
    m = len(events)
    if 0 <= label < NUM_PITCHES:
        return MIN_NOTE + int(label)
    if label == NO_EVENT_LABEL:
        return NO_EVENT
    if label == NOTE_OFF_LABEL:
        return NOTE_OFF
    if label in (REPEAT_1_BAR_LABEL, REPEAT_2_BARS_LABEL):
        d = LOOKBACKS[label - REPEAT_1_BAR_LABEL]
        return int(events[m - d]) if m >= d else NO_EVENT
    raise ValueError(f"class {label} is outside 0..{NUM_CLASSES - 1}")


def decode(labels: Sequence[int], prefix: Sequence[int] = ()) -> list[int]:
    """Classes -> events, appended one by one after `prefix` (lookback classes copy earlier events).

    ``decode(encode(m)[1], m[:1]) == clean_events(m)`` for every valid melody m.
    """
    events = [int(e) for e in prefix]
    for label in labels:
        events.append(label_to_event(int(label), events))
    return events

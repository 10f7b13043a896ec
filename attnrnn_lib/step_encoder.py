"""The 74-dim input encoding, one event at a time, inside a TensorFlow loop (for generation).

`encoding.encode_inputs` encodes a whole melody in numpy; generation needs the input of each new event without
leaving the compiled loop. The encoding of position p depends on the whole prefix only through a few running
summaries, kept here as tensors: the sounding note, the attack flag, the last note-on and melodic direction,
the scale-membership histogram of all note-ons, and when each pitch last sounded (for the last-3-pitches key).
Tested equal to `encoding.encode_inputs` on real melodies.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from attnrnn_lib import MIN_NOTE
from attnrnn_lib.encoding import (_IN_KEY, COUNTER_BITS, LOOKBACKS, NO_EVENT, NO_EVENT_LABEL, NOTE_OFF,
                                  NOTE_OFF_LABEL, NUM_PITCHES, REPEAT_1_BAR_LABEL, STEPS_PER_BAR)

_PITCH_KEYS = tf.constant(_IN_KEY[(np.arange(NUM_PITCHES) + MIN_NOTE) % 12], tf.int32)   # [36, 12]


def initial_state(batch: int) -> dict:
    """Running summaries of an empty melody, for `batch` melodies."""
    return {"current": tf.fill([batch], NOTE_OFF), "attack": tf.zeros([batch], tf.bool),
            "last_on": tf.fill([batch], -1), "direction": tf.zeros([batch], tf.int32),
            "key_hist": tf.zeros([batch, 12], tf.int32), "last_seen": tf.fill([batch, NUM_PITCHES], -1)}


def update(state: dict, event, position) -> dict:
    """Folds event [batch] (int32) at `position` (scalar) into the summaries."""
    is_on = event >= 0
    on_index = tf.clip_by_value(event - MIN_NOTE, 0, NUM_PITCHES - 1)
    moved = is_on & (state["last_on"] >= 0) & (event != state["last_on"])
    one_hot = tf.one_hot(on_index, NUM_PITCHES, dtype=tf.int32) * tf.cast(is_on, tf.int32)[:, None]  # [batch, 36]
    return {
        "current": tf.where(event != NO_EVENT, event, state["current"]),
        "attack": tf.where(is_on, True, tf.where(event == NO_EVENT, False, state["attack"])),
        "last_on": tf.where(is_on, event, state["last_on"]),
        "direction": tf.where(moved, tf.sign(event - state["last_on"]), state["direction"]),
        "key_hist": state["key_hist"] + tf.matmul(one_hot, _PITCH_KEYS),
        "last_seen": tf.where(one_hot > 0, tf.cast(position, tf.int32), state["last_seen"]),
    }


def _majority(hist):
    """[batch, 12] counts -> 1.0 where a key has the most (all ones for an empty histogram)."""
    return tf.cast(tf.equal(hist, tf.reduce_max(hist, -1, keepdims=True)), tf.float32)


def inputs(state: dict, history, position):
    """The input vector [batch, 74] of `position`, whose event is already in `history` [batch, steps] and state."""
    batch = tf.shape(history)[0]
    event = history[:, position]
    sounding = state["current"] >= 0
    pitch = tf.one_hot(tf.where(sounding, state["current"] - MIN_NOTE, -1), NUM_PITCHES)           # [batch, 36]
    f = lambda b: tf.cast(b, tf.float32)[:, None]                                                   # noqa: E731
    repeats = [f(tf.logical_and(position >= d, tf.equal(event, history[:, tf.maximum(position - d, 0)])))
               for d in LOOKBACKS]
    counter = position + 1
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(counter, tf.range(COUNTER_BITS)), 1)
    bits = tf.tile(tf.cast(2 * bits - 1, tf.float32)[None], [batch, 1])                             # [batch, 7]
    bar = tf.fill([batch, 1], tf.cast(tf.equal(counter % STEPS_PER_BAR, 0), tf.float32))
    seen = state["last_seen"]
    third = tf.math.top_k(seen, 3).values[:, 2:3]                                                   # [batch, 1]
    chosen = tf.cast((seen >= third) & (seen >= 0), tf.int32)                                       # [batch, 36]
    return tf.concat([pitch, f(sounding), f(~sounding), f(state["attack"]), f(state["direction"])] + repeats
                     + [bits, bar, _majority(state["key_hist"]), _majority(tf.matmul(chosen, _PITCH_KEYS))], -1)


def label_of(event, history, position):
    """The class of `event` [batch] placed at `position` (lookback repeats take precedence, longest last)."""
    label = tf.where(event >= 0, event - MIN_NOTE, tf.where(event == NOTE_OFF, NOTE_OFF_LABEL, NO_EVENT_LABEL))
    for d, repeat in zip(LOOKBACKS, (REPEAT_1_BAR_LABEL, REPEAT_1_BAR_LABEL + 1)):
        back = tf.where(position >= d, history[:, tf.maximum(position - d, 0)], NO_EVENT)
        label = tf.where(tf.equal(event, back), repeat, label)
    return label


def event_of(label, history, position):
    """Decodes class `label` [batch] for `position`: repeat classes copy the event 16 or 32 steps back."""
    event = tf.where(label < NUM_PITCHES, label + MIN_NOTE, tf.where(label == NO_EVENT_LABEL, NO_EVENT, NOTE_OFF))
    for d, repeat in zip(LOOKBACKS, (REPEAT_1_BAR_LABEL, REPEAT_1_BAR_LABEL + 1)):
        back = tf.where(position >= d, history[:, tf.maximum(position - d, 0)], NO_EVENT)
        event = tf.where(tf.equal(label, repeat), back, event)
    return event

"""Generation: primers, temperature sampling and beam search, all melodies in one compiled loop (SPEC §5).

    >>> melodies = generate(model, primer_events=[60, -2, 62, -2], num_steps=128, num_outputs=10, seed=1)
    >>> melodies[0].events, melodies[0].probabilities.shape, melodies[0].attention.shape
    ([60, -2, 62, ...], (127, 40), (127, 40))

Timing follows Magenta (SPEC §5.3): the primer's last note is ended, and generation starts two steps after it
ends (`start="magenta"`, the default, for identical output); `start="next_step"` starts right after it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from attnrnn_lib import encoding, melodies, step_encoder
from attnrnn_lib.errors import UsageError
from attnrnn_lib.melody_io import START_MODES, prepare_primer  # noqa: F401  (re-exported)
from attnrnn_lib.model import AttentionRNN

@dataclasses.dataclass
class Melody:
    """One generated melody, with what the model thought at every step.

    events: all events from step 0, primer included, in the primer's original register.
    primer_steps: how many leading events came from the primer (the model's input before sampling began).
    probabilities: [len(events) - 1, 40] the temperature-scaled distribution each step was drawn from
      (row p predicts event p + 1).
    attention: [len(events) - 1, attn_length] attention weights at each step (slot L-1 = the previous step).
    log_likelihood: sum of log-probabilities of every event after the first (primer included, as Magenta).
    transpose: semitones the primer was shifted by to fit the model's range (undone in `events`).
    """

    events: list[int]
    primer_steps: int
    probabilities: np.ndarray
    attention: np.ndarray
    log_likelihood: float
    transpose: int


class Generator:
    """A model wrapped in one compiled generation loop (built once per batch shape)."""

    def __init__(self, model: AttentionRNN):
        self.model = model
        # autograph=False: the loops are explicit tf.while_loops, and converting the code costs seconds per trace.
        self._loop = tf.function(self._run, reduce_retracing=True, autograph=False)

    def _extend(self, carry, first, count, temperature, seed):
        """Runs `count` steps from position `first`; positions still inside the primer are forced."""
        model = self.model

        def body(i, carry):
            cell, enc, history, scores, probs, alphas, forced_len = carry
            p = first + i
            x = step_encoder.inputs(enc, history, p)                                   # [batch, 74]
            logits, alpha, cell = model.step(x, cell)                                  # [batch, 40], [batch, L]
            log_probs = tf.nn.log_softmax(logits / temperature)                       # [batch, 40]
            sampled = tf.random.stateless_categorical(
                log_probs, 1, tf.stack([seed, tf.cast(p, tf.int64)]), dtype=tf.int32)[:, 0]
            event = tf.where(p + 1 < forced_len, history[:, p + 1], step_encoder.event_of(sampled, history, p + 1))
            # Scored by the event's own class (a sampled "no event" that repeats the bar scores as "repeat"),
            # as Magenta's evaluate_log_likelihood re-encodes the melody.
            label = step_encoder.label_of(event, history, p + 1)
            history = tf.tensor_scatter_nd_update(
                history, tf.stack([tf.range(tf.shape(history)[0]), tf.fill(tf.shape(event), p + 1)], 1), event)
            enc = step_encoder.update(enc, event, p + 1)
            scores += tf.gather(log_probs, label, batch_dims=1)
            at_p = tf.one_hot(p, tf.shape(probs)[1])[None, :, None]                   # [1, steps - 1, 1]
            probs += at_p * tf.exp(log_probs)[:, None]                                 # [batch, steps - 1, 40]
            alphas += at_p * alpha[:, None]                                            # [batch, steps - 1, L]
            return i + 1, (cell, enc, history, scores, probs, alphas, forced_len)

        return tf.while_loop(lambda i, c: i < count, body, (0, carry))[1]

    def _run(self, fed, batch, num_steps, temperature, beam_size, branch_factor, steps_per_iteration, seed):
        """fed [P] int32 -> events [batch, num_steps], scores, probabilities, attention (see `generate`)."""
        history = tf.tile(tf.pad(fed, [[0, num_steps - tf.shape(fed)[0]]])[None], [batch * beam_size, 1])
        enc = step_encoder.update(step_encoder.initial_state(batch * beam_size), history[:, 0], 0)
        rows = batch * beam_size
        carry = (self.model.zero_state(rows), enc, history, tf.zeros([rows]),
                 tf.zeros([rows, num_steps - 1, encoding.NUM_CLASSES]),
                 tf.zeros([rows, num_steps - 1, self.model.hparams.attn_length]), tf.shape(fed)[0])
        primer_end = tf.shape(fed)[0] - 1
        if beam_size == 1 and branch_factor == 1:    # plain ancestral sampling: primer and melody in one loop
            carry = self._extend(carry, 0, num_steps - 1, temperature, seed)
            return self._best(carry, batch, beam_size)
        # Beam search: the primer (forced) and a first chunk, then branch-extend-prune iterations (SPEC §5.5).
        to_generate = num_steps - 1 - primer_end
        first = (to_generate - 1) % steps_per_iteration + 1
        carry = self._extend(carry, 0, primer_end + first, temperature, seed)
        position = primer_end + first

        def iteration(position, carry):
            # Branch every beam entry, extend each branch, keep the beam_size best of each melody's branches.
            width = beam_size * branch_factor
            index = tf.repeat(tf.range(batch * beam_size), branch_factor)
            carry = self._gather(carry, index)
            carry = self._extend(carry, position, steps_per_iteration, temperature,
                                 seed + tf.cast(position, tf.int64) * 1_000_003)
            scores = tf.reshape(carry[3], [batch, width])
            best = tf.math.top_k(scores, beam_size, sorted=True).indices                  # [batch, beam]
            keep = tf.reshape(best + tf.range(batch)[:, None] * width, [-1])
            return position + steps_per_iteration, self._gather(carry, keep)

        _, carry = tf.while_loop(lambda p, c: p < num_steps - 1, iteration, (position, carry))
        return self._best(carry, batch, beam_size)

    @staticmethod
    def _best(carry, batch, beam_size):
        """The highest-scoring beam entry of each melody: (events, scores, probabilities, attention)."""
        cell, enc, history, scores, probs, alphas, _ = carry
        best = tf.argmax(tf.reshape(scores, [batch, beam_size]), -1, output_type=tf.int32)
        pick = best + tf.range(batch) * beam_size
        take = lambda t: tf.gather(t, pick)                                               # noqa: E731
        return take(history), take(scores), take(probs), take(alphas)

    @staticmethod
    def _gather(carry, index):
        cell, enc, history, scores, probs, alphas, forced_len = carry
        g = lambda t: tf.gather(t, index)                                                # noqa: E731
        return ([g(t) for t in cell], {k: g(v) for k, v in enc.items()}, g(history), g(scores), g(probs),
                g(alphas), forced_len)

    def __call__(self, fed, num_outputs, num_steps, temperature, beam_size, branch_factor, steps_per_iteration,
                 seed):
        # Sizes stay Python ints: every shape in the loop is static, so XLA can compile it whole.
        return self._loop(tf.constant(fed, tf.int32), int(num_outputs), int(num_steps),
                          tf.constant(temperature, tf.float32), int(beam_size), int(branch_factor),
                          int(steps_per_iteration), tf.constant(seed, tf.int64))


def generate(model: AttentionRNN, primer_events: list[int] | None = None, num_steps: int = 128,
             num_outputs: int = 1, temperature: float = 1.0, beam_size: int = 1, branch_factor: int = 1,
             steps_per_iteration: int = 1, seed: int = 0, start: str = "magenta",
             generator: Generator | None = None) -> list[Melody]:
    """Generates `num_outputs` melodies of `num_steps` 16th-note steps (primer included), as one batch.

    Same model, arguments and seed -> the same melodies. Beam search keeps `beam_size` candidates per melody and
    every `steps_per_iteration` steps branches each `branch_factor` ways (sampled, not argmax), as Magenta.
    """
    for name, value in (("num_steps", num_steps), ("num_outputs", num_outputs), ("beam_size", beam_size),
                        ("branch_factor", branch_factor), ("steps_per_iteration", steps_per_iteration)):
        if value < 1:
            raise UsageError(f"--{name}: must be at least 1, got {value}")
    if not temperature > 0:
        raise UsageError(f"--temperature: must be > 0, got {temperature}")
    rng = np.random.default_rng(seed)
    fed = prepare_primer(primer_events, num_steps, start, rng)
    squashed, amount = melodies.squash(fed)
    events, scores, probs, alphas = (generator or Generator(model))(
        encoding.clean_events(squashed).tolist(), num_outputs, num_steps, temperature, beam_size,
        branch_factor, steps_per_iteration, seed)
    out = []
    for i in range(num_outputs):
        ev = melodies.transpose(events[i].numpy().tolist(), -amount)
        out.append(Melody(ev, len(fed), probs[i].numpy(), alphas[i].numpy(), float(scores[i]), amount))
    return out

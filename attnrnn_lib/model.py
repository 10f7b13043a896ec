"""The attention RNN model: the cell's weights, the output layer, and the two ways to run them.

`AttentionRNN(inputs)` runs whole sequences through the fast kernel (`recurrence.py`) and returns
**logits and the attention weights**: `[batch, time, 40]` and `[batch, time, attn_length]`.
`AttentionRNN.step` runs one step of the Keras cell (generation). Both compute the same function.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from attnrnn_lib.attention_cell import AttentionCell
from attnrnn_lib.config import HParams
from attnrnn_lib.encoding import INPUT_SIZE, NUM_CLASSES
from attnrnn_lib.lstm_recurrence import LSTMRecurrence, dropped, project
from attnrnn_lib.parallel import usable_cores
from attnrnn_lib.recurrence import AttentionRecurrence


# A CPU training step splits its batch into pieces, one per core; each holds at least this many sequences. Smaller
# pieces cost more per sequence (16 sequences: about 10 % more than 64; bench/RESULTS.md), and on two cores this
# keeps the split of every batch of 16 or more.
MIN_PIECE = 8


def dropout_keep(shape, keep_prob: float, seed):
    """Which elements dropout keeps: a fresh Bernoulli(keep_prob) draw per element, seeded. bool [shape].

    Each element draws 16 random bits, not a 32-bit float: a CPU training step spends a noticeable share of its
    time making these masks, and this halves it. keep_prob is then resolved to 1/65536 (exact for Magenta's 0.5).
    """
    n = tf.reduce_prod(shape)
    bits = tf.random.stateless_uniform([(n + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32)
    halves = tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:n]                  # [n] uniform on 0..65535
    threshold = min(round(keep_prob * 65536), 65535)
    return tf.reshape(halves < threshold, shape)


def dropout_mask(shape, keep_prob: float, seed):
    """`dropout_keep` as tf.nn.dropout's multiplier: 1/keep_prob where kept, else 0. float32 [shape]."""
    return tf.cast(dropout_keep(shape, keep_prob, seed), tf.float32) / keep_prob


class AttentionRNN(keras.Model):
    """Magenta's attention_rnn in either layout (SPEC §3.2/§3.3) with Magenta's parameter shapes."""

    def __init__(self, hparams: HParams, mixed_precision: bool = False, **kwargs):
        """Args:
          hparams: the model's hyperparameters.
          mixed_precision: run the output projection over all time steps at once in bfloat16 with float32
            weights, as Keras' "mixed_bfloat16" policy does: for GPUs and TPUs (and CPUs with AVX512-BF16 or
            AMX). The recurrence, with the input and between-layer projections folded into its steps, stays
            float32: its cell state and attention softmax accumulate over hundreds of steps, and it is bound by
            latency, not arithmetic.
        """
        super().__init__(**kwargs)
        self.hparams, self.mixed_precision = hparams, mixed_precision
        self.cell = AttentionCell(hparams, name="attention_cell")
        last = hparams.rnn_layer_sizes[-1]
        self.fc_weights = self.add_weight(name="fc_weights", shape=(last, NUM_CLASSES),
                                          initializer=keras.initializers.GlorotUniform())
        self.fc_biases = self.add_weight(name="fc_biases", shape=(NUM_CLASSES,), initializer="zeros")
        self.cell.build((None, INPUT_SIZE))
        inner = self.cell.inner
        # With dropout inside the wrapper (2016 layout, training) and without (everything else).
        self._recurrence = {masked: AttentionRecurrence(inner, hparams.attn_length, (masked,) * len(inner))
                            for masked in (False, True)}
        self._outer = LSTMRecurrence(keep_prob=hparams.dropout_keep_prob)
        self.built = True

    def call(self, inputs, training=False, seed=None):
        """Runs whole sequences.

        Args:
          inputs: [batch, time, 74] encoded melodies (padding after a sequence's end does not change its steps).
          training: apply dropout (Magenta also keeps it on for evaluation; see `train.evaluate`).
          seed: int32 [2], the dropout seed; required when training.
        Returns:
          logits [batch, time, 40], attention [batch, time, attn_length].
        """
        hp, cell = self.hparams, self.cell
        dropout = training and hp.dropout_keep_prob < 1.0
        inputs = tf.convert_to_tensor(inputs)                                      # [batch, T, 74], any number type
        steps, batch = tf.shape(inputs)[1], tf.shape(inputs)[0]
        n = len(cell.inner)
        seeds = tf.random.experimental.stateless_split(seed, len(hp.rnn_layer_sizes) + 1) if dropout else None
        k_in_x, k_in_a = cell.in_kernel[:INPUT_SIZE], cell.in_kernel[INPUT_SIZE:]  # [74, 74], [A, 74]
        k1 = cell.lstm_kernels[0]
        k1_x, k1_h = k1[:INPUT_SIZE], k1[INPUT_SIZE:]                            # [74, 4u1], [u1, 4u1]
        w_x = tf.matmul(k_in_x, k1_x)                                              # [74, 4u1]
        b_x = tf.matmul(cell.in_bias[None], k1_x)[0] + cell.lstm_biases[0]         # [4u1]
        m1 = tf.concat([tf.matmul(k_in_a, k1_x), k1_h], 0)                         # [A + u1, 4u1]
        masks = ([dropout_mask([steps, batch, u], hp.dropout_keep_prob, seeds[k])
                  for k, u in enumerate(cell.inner)] if dropout and hp.layout == "stack" else [])
        weights = [cell.query_kernel, cell.query_bias, cell.attn_w, cell.attn_v, cell.out_kernel, cell.out_bias]
        recurrence = self._recurrence[bool(masks)]
        # 2017 layout: after the wrapper, dropout then a plain LSTM per layer, and dropout on the last output.
        outer_keep = [dropout_keep([steps, batch, hp.rnn_layer_sizes[n + k - 1]], hp.dropout_keep_prob,
                                   seeds[n + k]) for k in range(len(cell.outer))] if dropout else []
        last_keep = ([dropout_keep([steps, batch, hp.rnn_layer_sizes[-1]], hp.dropout_keep_prob, seeds[-1])]
                     if dropout and cell.outer else [])
        # Sequences are independent: on a CPU, pieces of the batch run through the whole model on separate cores
        # at once, and only their logits are joined (the memory a training step holds is the sum of the pieces').
        shards = self._shards(inputs)
        pieces = lambda ts: [tf.split(t, shards, axis=1) for t in ts]          # noqa: E731
        inner_pieces, outer_pieces, last_pieces = pieces(masks), pieces(outer_keep), pieces(last_keep)
        logits, attention = [], []
        for i, xs in enumerate(tf.split(inputs, shards, axis=0)):
            xs = tf.transpose(xs, [1, 0, 2])            # [T, b, 74]; int8 batches stay int8 (the kernel casts)
            h, alpha = recurrence(xs, w_x, b_x, m1, *cell.lstm_kernels[1:n], *cell.lstm_biases[1:n],
                                  *[m[i] for m in inner_pieces], *weights)     # [T, b, A], [T, b, L]
            keeps = [k[i] for k in outer_pieces] or [None] * len(cell.outer)
            for k, keep in enumerate(keeps):
                h = self._outer(h, cell.lstm_kernels[n + k], cell.lstm_biases[n + k], keep)  # [T, b, u]
            for keep in last_pieces:
                h = dropped(h, keep[i], hp.dropout_keep_prob)
            logits.append(self._project(h, self.fc_weights) + self.fc_biases)      # [T, b, 40]
            attention.append(alpha)
        logits, attention = tf.concat(logits, 1), tf.concat(attention, 1)          # [T, batch, 40], [T, batch, L]
        return tf.transpose(logits, [1, 0, 2]), tf.transpose(attention, [1, 0, 2])

    def _project(self, x, w):
        """x [T, batch, n] @ w [n, m], in bfloat16 under mixed precision."""
        return project(x, w, dtype=tf.bfloat16 if self.mixed_precision else tf.float32)

    @staticmethod
    def _shards(inputs) -> int:
        """How many pieces a CPU splits a batch into: one per usable core, each of at least `MIN_PIECE` sequences,
        and a divisor of the batch so that every piece runs the same compiled kernels. 1 on a GPU or TPU."""
        batch = inputs.shape[0]
        cpu_only = not tf.config.list_logical_devices("GPU") and not tf.config.list_logical_devices("TPU")
        if not batch or not cpu_only:
            return 1
        return max(n for n in range(1, usable_cores() + 1) if batch % n == 0 and (n == 1 or batch // n >= MIN_PIECE))

    def zero_state(self, batch_size):
        return self.cell.zero_state(batch_size)

    def step(self, inputs, state):
        """One generation step: inputs [batch, 74] -> (logits [batch, 40], alpha [batch, L], new state)."""
        out, state = self.cell.call(inputs, state)   # .call: no Keras bookkeeping inside compiled loops
        last = self.hparams.rnn_layer_sizes[-1]
        logits = tf.matmul(out[:, :last], self.fc_weights) + self.fc_biases      # [batch, 40]
        return logits, out[:, last:], state

    def stepwise(self, inputs):
        """The same as `call(inputs)` without dropout, one cell step at a time (the reference form)."""
        inputs = tf.convert_to_tensor(inputs, tf.float32)                          # [batch, T, 74]
        state, logits, alphas = self.zero_state(tf.shape(inputs)[0]), [], []
        for t in range(inputs.shape[1]):
            lg, alpha, state = self.step(inputs[:, t], state)
            logits.append(lg), alphas.append(alpha)
        return tf.stack(logits, 1), tf.stack(alphas, 1)


def count_params(model: AttentionRNN) -> int:
    return int(sum(int(tf.size(v)) for v in model.trainable_variables))

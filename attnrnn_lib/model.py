"""The attention RNN model: the cell's weights, the output layer, and the two ways to run them.

`AttentionRNN(inputs)` runs whole sequences through the fast kernel (`recurrence.py`) and returns
**logits and the attention weights**: `[batch, time, 40]` and `[batch, time, attn_length]`.
`AttentionRNN.step` runs one step of the Keras cell (generation). Both compute the same function.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from attnrnn_lib.attention_cell import AttentionCell
from attnrnn_lib.config import HParams
from attnrnn_lib.encoding import INPUT_SIZE, NUM_CLASSES
from attnrnn_lib.recurrence import AttentionRecurrence, LSTMRecurrence, project


def dropout_mask(shape, keep_prob: float, seed):
    """A fresh Bernoulli(keep_prob) mask per element, scaled by 1/keep_prob as tf.nn.dropout's, seeded.

    Each element draws 16 random bits, not a 32-bit float: a CPU training step spends a noticeable share of its
    time making these masks, and this halves it. keep_prob is then resolved to 1/65536 (exact for Magenta's 0.5).
    """
    n = tf.reduce_prod(shape)
    bits = tf.random.stateless_uniform([(n + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32)
    halves = tf.reshape(tf.bitcast(bits, tf.uint16), [-1])[:n]                  # [n] uniform on 0..65535
    threshold = min(round(keep_prob * 65536), 65535)
    return tf.reshape(tf.cast(halves < threshold, tf.float32), shape) / keep_prob


class AttentionRNN(keras.Model):
    """Magenta's attention_rnn in either layout (SPEC §3.2/§3.3) with Magenta's parameter shapes."""

    def __init__(self, hparams: HParams, mixed_precision: bool = False, **kwargs):
        """Args:
          hparams: the model's hyperparameters.
          mixed_precision: run the projections over all time steps at once (input, between layers, output) in
            bfloat16 with float32 weights, as Keras' "mixed_bfloat16" policy does: for GPUs and TPUs (and CPUs
            with AVX512-BF16 or AMX). The recurrence stays float32: its cell state and attention softmax
            accumulate over hundreds of steps, and it is bound by latency, not arithmetic.
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
        self._outer = LSTMRecurrence()
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
        x = tf.transpose(tf.convert_to_tensor(inputs, tf.float32), [1, 0, 2])      # [T, batch, 74]
        steps, batch = tf.shape(x)[0], tf.shape(x)[1]
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
        outer_masks = [dropout_mask([steps, batch, hp.rnn_layer_sizes[n + k - 1]], hp.dropout_keep_prob,
                                    seeds[n + k]) for k in range(len(cell.outer))] if dropout else []
        # Sequences are independent: on a CPU, halves of the batch run through the whole stack on two cores at
        # once. Each half's input projection is made just before its kernel, so the whole batch's never exists.
        shards = self._shards(inputs)
        outputs, attention = [], []
        for xs, *ms in zip(*[tf.split(t, shards, axis=1) for t in [x] + masks + outer_masks]):
            # The input half of layer 1 for every step at once; only [a; h1] stays inside the loop.
            z1x = self._project(xs, w_x) + b_x                                     # [T, batch/shards, 4u1]
            h, alpha = recurrence(z1x, m1, *cell.lstm_kernels[1:n], *cell.lstm_biases[1:n], *ms[:len(masks)],
                                  *weights)                                       # [T, b, A], [T, b, L]
            for k, mask in enumerate(ms[len(masks):] or [None] * len(cell.outer)):
                h = h if mask is None else h * mask
                width, kernel = hp.rnn_layer_sizes[n + k - 1], cell.lstm_kernels[n + k]
                zx = self._project(h, kernel[:width]) + cell.lstm_biases[n + k]     # [T, b, 4u]
                h = self._outer(zx, kernel[width:])                                 # [T, b, u]
            outputs.append(h), attention.append(alpha)
        h = tf.concat(outputs, 1)                                                  # [T, batch, last]
        attention = tf.concat(attention, 1)                                        # [T, batch, L]
        if dropout and cell.outer:
            h = h * dropout_mask(tf.shape(h), hp.dropout_keep_prob, seeds[-1])
        logits = self._project(h, self.fc_weights) + self.fc_biases                # [T, batch, 40]
        return tf.transpose(logits, [1, 0, 2]), tf.transpose(attention, [1, 0, 2])

    def _project(self, x, w):
        """x [T, batch, n] @ w [n, m], in bfloat16 under mixed precision."""
        if self.mixed_precision:
            return tf.cast(project(tf.cast(x, tf.bfloat16), tf.cast(w, tf.bfloat16)), tf.float32)
        return project(x, w)

    def compile_short_kernels(self, batch_size: int):
        """Compiles the training kernels for short batches (`recurrence.SHORT_CAPACITY`, ~5 s on a CPU) by
        running them on an all-zero one-step batch. Returns the gradients, which mean nothing."""
        with tf.GradientTape() as tape:
            logits, _ = self(tf.zeros([batch_size, 1, INPUT_SIZE]), training=True,
                             seed=tf.constant([0, 0], tf.int64))
        return tape.gradient(logits, self.trainable_variables)

    @staticmethod
    def _shards(inputs) -> int:
        batch = inputs.shape[0]
        cpu_only = not tf.config.list_logical_devices("GPU") and not tf.config.list_logical_devices("TPU")
        return 2 if cpu_only and (os.cpu_count() or 1) > 1 and batch and batch % 2 == 0 and batch >= 16 else 1

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

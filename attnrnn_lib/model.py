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
from attnrnn_lib.recurrence import AttentionRecurrence, LSTMRecurrence


def dropout_mask(shape, keep_prob: float, seed):
    """A fresh Bernoulli(keep_prob) mask per element, scaled by 1/keep_prob (tf.nn.dropout's), seeded."""
    return tf.cast(tf.random.stateless_uniform(shape, seed) < keep_prob, tf.float32) / keep_prob


class AttentionRNN(keras.Model):
    """Magenta's attention_rnn in either layout (SPEC §3.2/§3.3) with Magenta's parameter shapes."""

    def __init__(self, hparams: HParams, **kwargs):
        super().__init__(**kwargs)
        self.hparams = hparams
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
        n, A = len(cell.inner), hp.attn_size
        seeds = tf.random.experimental.stateless_split(seed, len(hp.rnn_layer_sizes) + 1) if dropout else None
        k_in_x, k_in_a = cell.in_kernel[:INPUT_SIZE], cell.in_kernel[INPUT_SIZE:]  # [74, 74], [A, 74]
        k1 = cell.lstm_kernels[0]
        k1_x, k1_h = k1[:INPUT_SIZE], k1[INPUT_SIZE:]                            # [74, 4u1], [u1, 4u1]
        # The input half of layer 1 for every step at once; only [a; h1] stays inside the loop.
        z1x = tf.einsum("tbi,ig->tbg", tf.einsum("tbi,ij->tbj", x, k_in_x) + cell.in_bias, k1_x)
        z1x += cell.lstm_biases[0]                                                 # [T, batch, 4u1]
        m1 = tf.concat([tf.matmul(k_in_a, k1_x), k1_h], 0)                         # [A + u1, 4u1]
        masks = ([dropout_mask([steps, batch, u], hp.dropout_keep_prob, seeds[k])
                  for k, u in enumerate(cell.inner)] if dropout and hp.layout == "stack" else [])
        weights = [cell.query_kernel, cell.query_bias, cell.attn_w, cell.attn_v, cell.out_kernel, cell.out_bias]
        recurrence = self._recurrence[bool(masks)]
        # Sequences are independent: on a CPU, halves of the batch run as two kernels on two cores at once.
        shards = self._shards(inputs)
        parts = [recurrence(z, m1, *cell.lstm_kernels[1:n], *cell.lstm_biases[1:n], *ms, *weights)
                 for z, *ms in zip(*[tf.split(t, shards, axis=1) for t in [z1x] + masks])]
        o = tf.concat([p[0] for p in parts], 1)                                    # [T, batch, A]
        attention = tf.concat([p[1] for p in parts], 1)                            # [T, batch, L]
        h = o
        for k, u in enumerate(cell.outer):                       # 2017 layout: dropout, then a plain LSTM
            j = n + k
            if dropout:
                h = h * dropout_mask(tf.shape(h), hp.dropout_keep_prob, seeds[j])
            width = hp.rnn_layer_sizes[j - 1]
            kernel = cell.lstm_kernels[j]
            zx = tf.einsum("tbi,ig->tbg", h, kernel[:width]) + cell.lstm_biases[j]  # [T, batch, 4u]
            h = self._outer(zx, kernel[width:])                                     # [T, batch, u]
        if dropout and cell.outer:
            h = h * dropout_mask(tf.shape(h), hp.dropout_keep_prob, seeds[-1])
        logits = tf.einsum("tbu,uc->tbc", h, self.fc_weights) + self.fc_biases     # [T, batch, 40]
        return tf.transpose(logits, [1, 0, 2]), tf.transpose(attention, [1, 0, 2])

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

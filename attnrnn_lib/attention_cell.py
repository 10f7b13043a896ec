"""The attention LSTM cell, one time step at a time, as a Keras 3 RNN cell (SPEC §3).

This is the readable statement of the model and the form generation runs. Training runs the same equations over
whole sequences in `recurrence.py` (which must, and is tested to, give the same numbers).

One step, for input x_t (74 wide), in the 2017 layout ("first_layer"; Magenta's released bundles):

    x~    = [x_t ; a_{t-1}] K_in + b_in                  the input, mixed with the last attention read
    c1,h1 = LSTM1(x~, c1, h1)
    q     = [c1 ; h1] K_q + b_q                          the query comes from the new state
    alpha = softmax_l( v . tanh(keys_l + q) )            keys_l = W_l U, over the last attn_length outputs W
    a_t   = sum_l alpha_l W_l                             the attention read
    o_t   = [h1 ; a_t] K_o + b_o                          enters the window; its key is cached now
    h2    = LSTM2(o_t, ...)  ...  -> the output layer

In the 2016 layout ("stack") the whole LSTM stack sits where LSTM1 is, and o_t goes to the output layer.
Weights keep Magenta's TF1 shapes and LSTM gate order (i, j, f, o) so its checkpoints load as they are.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from attnrnn_lib.config import HParams
from attnrnn_lib.encoding import INPUT_SIZE
from attnrnn_lib.lstm_recurrence import lstm_step


def attention_scores(keys, query, v):
    """Additive (Bahdanau) scores of one query against the attention window.

    Args:
      keys:  [batch, attn_length, units]  projected window, cached as outputs enter it.
      query: [batch, units]               projected cell state.
      v:     [units]
    Returns:
      [batch, attn_length] unnormalised scores.
    """
    return tf.reduce_sum(v * tf.tanh(keys + query[:, None, :]), axis=-1)


class AttentionCell(keras.layers.Layer):
    """Magenta's attention LSTM (both layouts) as a Keras RNN cell; holds every recurrent weight.

    State, in Magenta's nest order: for each wrapped LSTM (c, h), then a [A], keys [L, A], window [L, A],
    then (c, h) for each LSTM after the wrapper. Output: [final hidden (the output layer's input) ; alpha].
    The cell has no dropout: it is the inference form (Magenta's generate graph uses keep_prob 1).
    """

    def __init__(self, hparams: HParams, cache_keys: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.hparams, self.cache_keys = hparams, cache_keys
        sizes, A, L = hparams.rnn_layer_sizes, hparams.attn_size, hparams.attn_length
        self.inner = sizes if hparams.layout == "stack" else sizes[:1]   # LSTMs inside the wrapper
        self.outer = () if hparams.layout == "stack" else sizes[1:]      # LSTMs after it
        self.state_size = ([d for u in self.inner for d in (u, u)] + [A, [L, A], [L, A]]
                           + [d for u in self.outer for d in (u, u)])
        self.output_size = sizes[-1] + L
        glorot, zeros = keras.initializers.GlorotUniform, keras.initializers.Zeros
        w = lambda name, shape, init=glorot: self.add_weight(name=name, shape=shape, initializer=init())  # noqa
        self.in_kernel, self.in_bias = w("in_kernel", (INPUT_SIZE + A, INPUT_SIZE)), w("in_bias", (INPUT_SIZE,), zeros)
        widths = [INPUT_SIZE] + list(sizes[:-1])          # each LSTM's input width; layer 2 reads o_t (A = u1)
        self.lstm_kernels = [w(f"lstm{k}_kernel", (widths[k] + u, 4 * u)) for k, u in enumerate(sizes)]
        self.lstm_biases = [w(f"lstm{k}_bias", (4 * u,), zeros) for k, u in enumerate(sizes)]
        self.query_kernel = w("query_kernel", (2 * sum(self.inner), A))
        self.query_bias = w("query_bias", (A,), zeros)
        self.attn_w = w("attn_w", (A, A))                 # U; TF1 stores it as [1, 1, A, A]
        self.attn_v = w("attn_v", (A,))
        self.out_kernel = w("out_kernel", (self.inner[-1] + A, A))
        self.out_bias = w("out_bias", (A,), zeros)

    def zero_state(self, batch_size):
        """The all-zero initial state (Magenta's), as a list of tensors."""
        return [tf.zeros([batch_size] + (s if isinstance(s, list) else [s])) for s in self.state_size]

    def call(self, inputs, states):
        """One step: inputs [batch, 74] -> ([batch, last + L], new states)."""
        n = len(self.inner)
        states = list(states)
        inner, (a, keys, window), outer = states[:2 * n], states[2 * n:2 * n + 3], states[2 * n + 3:]
        x = tf.matmul(tf.concat([inputs, a], -1), self.in_kernel) + self.in_bias    # [batch, 74]
        new_inner, h = [], x
        for k in range(n):
            c, h = lstm_step(h, inner[2 * k], inner[2 * k + 1], self.lstm_kernels[k], self.lstm_biases[k])
            new_inner += [c, h]                                                     # [batch, u_k] each
        query = tf.matmul(tf.concat(new_inner, -1), self.query_kernel) + self.query_bias  # [batch, A]
        if not self.cache_keys:                             # Magenta's form: project the whole window every step
            keys = tf.einsum("bla,ac->blc", window, self.attn_w)                    # [batch, L, A]
        alpha = tf.nn.softmax(attention_scores(keys, query, self.attn_v), -1)       # [batch, L]
        a = tf.reduce_sum(alpha[:, :, None] * window, 1)                            # [batch, A]
        o = tf.matmul(tf.concat([h, a], -1), self.out_kernel) + self.out_bias       # [batch, A]
        window = tf.concat([window[:, 1:], o[:, None]], 1)                          # [batch, L, A]
        if self.cache_keys:
            keys = tf.concat([keys[:, 1:], tf.matmul(o, self.attn_w)[:, None]], 1)  # [batch, L, A]
        new_outer, h = [], o
        for k, _ in enumerate(self.outer):
            j = n + k
            c, h = lstm_step(h, outer[2 * k], outer[2 * k + 1], self.lstm_kernels[j], self.lstm_biases[j])
            new_outer += [c, h]
        return tf.concat([h, alpha], -1), new_inner + [a, keys, window] + new_outer

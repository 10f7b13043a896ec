"""The pieces both training kernels share, and the plain LSTM layer over a whole sequence.

A training kernel runs a recurrence over every step of a batch inside one XLA loop and keeps only small per-step
tensors for its hand-written backward pass (why: perf/NOTES.md and `recurrence.py`). Three choices here keep its
memory small:
- The input projection happens inside the compiled forward loop, so the `[T, batch, 4u]` pre-activations exist
  only while it runs.
- The backward pass walks the sequence in chunks of `CHUNK` steps from the end. After each chunk the weight
  gradients take that chunk's per-step gradients in a few large matrix products, so those per-step gradients never
  exist for the whole sequence at once.
- Sequences are padded to 128 steps or a multiple of 512 before they enter XLA and the loops stop at the real
  length: all bucket lengths share two compiled kernels instead of one compilation per padded length.

Everything is time-major: `[time, batch, ...]`. LSTM gates are in TF1 order i, j, f, o with the +1 forget bias
added at run time (SPEC §3.1), so Magenta's kernels are used as they are.
"""

from __future__ import annotations

import os

import tensorflow as tf


def _prefer_wide_vectors() -> None:
    """On AVX-512 CPUs, lets XLA emit 512-bit vector code (its default is 256): the window arithmetic runs about
    17 % faster on this project's machine. Read when XLA compiles its first kernel, so it is set on import."""
    flags = os.environ.get("XLA_FLAGS", "")
    try:
        with open("/proc/cpuinfo") as f:
            avx512 = " avx512f " in f.read(1 << 16).replace("\n", " ")
    except OSError:
        avx512 = False
    if avx512 and "xla_cpu_prefer_vector_width" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_prefer_vector_width=512".strip()


_prefer_wide_vectors()

FORGET_BIAS = 1.0
# Compiled time lengths. Short batches get a short one: the loops stop at the real length, but every buffer is
# zero-filled at full capacity. 512 is Magenta's longest training sequence; longer inputs use a multiple of it.
SHORT_CAPACITY, CAPACITY = 128, 512
# Steps per backward chunk: large enough that each weight-gradient product has batch x 32 rows (thousands), small
# enough that a chunk's per-step gradients are a sixteenth of a 512-step sequence's. 32 and 64 train equally fast.
CHUNK = 32


def pad_time(x, capacity):
    """x [T, ...] -> [capacity, ...], zeros after step T."""
    return tf.pad(x, [[0, capacity - tf.shape(x)[0]]] + [[0, 0]] * (x.shape.rank - 1))


def capacity_for(steps):
    """The compiled length that holds `steps` steps."""
    long = (tf.maximum(steps, 1) + CAPACITY - 1) // CAPACITY * CAPACITY
    return tf.where(steps <= SHORT_CAPACITY, SHORT_CAPACITY, long)


def lstm_forward(z, c_prev):
    """One LSTM step from pre-activations `z` [batch, 4u] -> (activated gates [batch, 4u], c, h)."""
    i, j, f, o = tf.split(z, 4, axis=-1)                       # each [batch, u]
    i, j, f, o = tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f + FORGET_BIAS), tf.sigmoid(o)
    c = c_prev * f + i * j                                     # [batch, u]
    h = tf.tanh(c) * o                                         # [batch, u]
    return tf.concat([i, j, f, o], -1), c, h


def lstm_step(x, c, h, kernel, bias):
    """TF1 BasicLSTMCell: x [batch, in], c, h [batch, u], kernel [in + u, 4u] -> (c, h)."""
    _, c, h = lstm_forward(tf.matmul(tf.concat([x, h], -1), kernel) + bias, c)
    return c, h


def hidden(gates, c):
    """h = o * tanh(c) from the activated gates [..., 4u] and c [..., u]: the backward passes rebuild h this way
    rather than keep a copy of it for every step."""
    return gates[..., 3 * c.shape[-1]:] * tf.tanh(c)


def lstm_backward(gates, c, c_prev, dh, dc):
    """Backward of `lstm_forward`: (dz [batch, 4u], dc_prev [batch, u])."""
    i, j, f, o = tf.split(gates, 4, axis=-1)                   # each [batch, u]
    tc = tf.tanh(c)
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = tf.concat([dc * j * i * (1.0 - i), dc * i * (1.0 - j * j),
                    dc * c_prev * f * (1.0 - f), dh * tc * o * (1.0 - o)], -1)
    return dz, dc * f


def before(stack, t):
    """stack[t - 1] [batch, ...], or zeros at t = 0: the value step t started from."""
    return stack[tf.maximum(t - 1, 0)] * tf.cast(t > 0, stack.dtype)


def previous_rows(x, s, e):
    """x[s - 1 : e - 1] [e - s, ...]: what steps s .. e-1 started from, with zeros for step 0."""
    return tf.pad(x[tf.maximum(s - 1, 0):e - 1], [[tf.cast(s == 0, tf.int32), 0]] + [[0, 0]] * (x.shape.rank - 1))


def _rows(x):
    """[..., n] -> [rows, n]: every leading axis as one, so a contraction is a single MatMul (TensorFlow's CPU
    einsum runs the same contractions 1.3-1.8x slower)."""
    return tf.reshape(x, [-1, tf.shape(x)[-1]])


def sum_outer(x, dy):
    """sum_t x[t]^T dy[t] for x [T, batch, n], dy [T, batch, m] -> [n, m]: a weight gradient."""
    return tf.matmul(_rows(x), _rows(dy), transpose_a=True)


def project(x, w, transpose_w=False, dtype=tf.float32):
    """x [..., n] @ w [n, m] (or w [m, n] transposed) -> [..., m] in float32, computed in `dtype`."""
    y = tf.matmul(tf.cast(_rows(x), dtype), tf.cast(w, dtype), transpose_b=transpose_w)
    return tf.cast(tf.reshape(y, tf.concat([tf.shape(x)[:-1], tf.shape(y)[-1:]], 0)), tf.float32)


def backward_by_chunks(steps, chunk, carry, grads, run_chunk):
    """Walks steps `steps - 1` .. 0 in chunks [s, e) of `chunk` steps, the last one first.

    `run_chunk(s, e, carry, grads) -> (carry, grads)` runs the chunk's backward steps, passing the recurrent
    gradients on in `carry`, and adds the chunk's share to the accumulated weight gradients `grads`.
    """
    def body(s, carry, grads):
        carry, grads = run_chunk(s, tf.minimum(s + chunk, steps), carry, grads)
        return s - chunk, carry, grads

    _, carry, grads = tf.while_loop(lambda s, *_: s >= 0, body, ((steps - 1) // chunk * chunk, carry, grads),
                                   parallel_iterations=1)
    return carry, grads


class LSTMRecurrence:
    """A plain LSTM layer over a sequence with a hand-written backward pass (the layers after the attention
    wrapper in the 2017 layout). Call with x [T, batch, n] and a TF1 kernel [n + u, 4u] and bias [4u]; returns
    h [T, batch, u]."""

    def __init__(self, chunk: int = CHUNK):
        self.chunk = chunk
        self._forward = tf.function(self._forward_loop, jit_compile=True, reduce_retracing=True)
        self._backward = tf.function(self._backward_chunk, jit_compile=True, reduce_retracing=True)

    def __call__(self, x, kernel, bias):
        @tf.custom_gradient
        def run(x, kernel, bias):
            steps, width = tf.shape(x)[0], x.shape[-1]
            capacity = capacity_for(steps)
            gates, c, h = self._forward(steps, tf.stop_gradient(pad_time(x, capacity)),
                                        tf.stop_gradient(kernel), tf.stop_gradient(bias))

            def grad(d_h):
                d_h, kx, kh = pad_time(d_h, capacity), kernel[:width], kernel[width:]

                def run_chunk(s, e, carry, grads):
                    dz, *carry = self._backward(s, e, d_h, gates, c, kh, *carry)
                    dz = dz[:e - s]                                                # [e - s, batch, 4u]
                    d_kernel, d_bias, d_x = grads
                    h_prev = hidden(previous_rows(gates, s, e), previous_rows(c, s, e))  # [e - s, batch, u]
                    d_kernel += tf.concat([sum_outer(x[s:e], dz), sum_outer(h_prev, dz)], 0)
                    return carry, (d_kernel, d_bias + tf.reduce_sum(dz, [0, 1]),
                                   d_x.write(s // self.chunk, project(dz, kx, transpose_w=True)))

                zero = tf.zeros_like(c[0])                                         # [batch, u]
                chunks = tf.TensorArray(tf.float32, size=(steps + self.chunk - 1) // self.chunk, infer_shape=False)
                _, (d_kernel, d_bias, d_x) = backward_by_chunks(
                    steps, self.chunk, [zero, zero], (tf.zeros_like(kernel), tf.zeros_like(bias), chunks), run_chunk)
                return tf.ensure_shape(d_x.concat(), x.shape), d_kernel, d_bias       # [T, batch, n], ...
            return h[:steps], grad
        # Read the variables here: the gradient flows to them as usual.
        return run(*[tf.convert_to_tensor(t) for t in (x, kernel, bias)])

    def _forward_loop(self, steps, x, kernel, bias):
        """Runs `steps` steps of x padded to a capacity; returns capacity-long gates, c, h."""
        capacity, batch, units = tf.shape(x)[0], tf.shape(x)[1], kernel.shape[1] // 4
        arrays = [tf.TensorArray(tf.float32, size=capacity) for _ in range(3)]

        def body(t, c, h, arrays):
            # The input projection inside the loop: precomputed for every step it would need two more
            # [T, batch, 4u] buffers while the loop runs, for the same arithmetic.
            g, c, h = lstm_forward(tf.matmul(tf.concat([x[t], h], -1), kernel) + bias, c)   # [batch, 4u], ...
            return t + 1, c, h, [ta.write(t, v) for ta, v in zip(arrays, (g, c, h))]

        zero = tf.zeros([batch, units])
        *_, arrays = tf.while_loop(lambda t, *_: t < steps, body, (0, zero, zero, arrays),
                                   maximum_iterations=steps)
        return [ta.stack() for ta in arrays]

    def _backward_chunk(self, s, e, d_h_ext, gates, cs, kh, dc, dh):
        """Steps e-1 .. s backward from the recurrent gradients (dc, dh) of step e; returns dz [chunk, batch, 4u]
        (row t - s for step t) and the recurrent gradients of step s."""
        dz_array = tf.TensorArray(tf.float32, size=self.chunk)

        def body(t, dc, dh, dz_array):
            dz, dc = lstm_backward(gates[t], cs[t], before(cs, t), dh + d_h_ext[t], dc)
            return t - 1, dc, tf.matmul(dz, kh, transpose_b=True), dz_array.write(t - s, dz)

        _, dc, dh, dz_array = tf.while_loop(lambda t, *_: t >= s, body, (e - 1, dc, dh, dz_array),
                                            maximum_iterations=self.chunk)
        return dz_array.stack(), dc, dh

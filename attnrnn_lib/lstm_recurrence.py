"""The pieces both training kernels share, and the plain LSTM layer over a whole sequence.

A training kernel runs a recurrence over every step of a batch inside one XLA loop and keeps only small per-step
tensors for its hand-written backward pass (why: perf/NOTES.md and `recurrence.py`). What keeps its memory small:
- The input projection happens inside the compiled forward loop, so no `[T, batch, 4u]` pre-activations exist.
- Per step it keeps the gates i, f, o (in 16 bits, `GATE_DTYPE`) and the cell state c; j comes back from c,
  and h = o tanh(c).
- The backward pass walks the sequence in chunks of `CHUNK` steps from the end. After each chunk the weight
  gradients take that chunk's per-step gradients in a few large matrix products, so those per-step gradients never
  exist for the whole sequence at once.
- Sequences are padded to a multiple of 512 steps before they enter XLA and the loops stop at the real length:
  every bucket length up to Magenta's 512 shares one compiled kernel. Each compilation costs seconds and leaves
  tens of MB of compiled code and compiler memory behind; zero-filling 512-step buffers for a short batch costs
  milliseconds.

Everything is time-major: `[time, batch, ...]`. LSTM gates are in TF1 order i, j, f, o with the +1 forget bias
added at run time (SPEC §3.1), so Magenta's kernels are used as they are.
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla


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
# The compiled time length: Magenta's longest training sequence. Longer inputs use a multiple of it.
CAPACITY = 512
# How the training kernels keep the gates i, f, o of every step for the backward pass: 16 bits each, which halves
# the largest per-step arrays. Sigmoid gates lie in [0, 1], so 16-bit fixed point (`pack_gates`) resolves them to
# 1/65535 everywhere, where float16 resolves only 2^-11 near 1: the gradients differ from float32 storage's by
# at most a few 1e-5 of themselves, against a few 1e-4 with float16, at the same speed and size (the forward pass
# and the loss are unchanged; tests/test_model.py). tf.float16 and tf.float32 work too.
GATE_DTYPE = tf.uint16
_GATE_SCALE = 65535.0


def pack_gates(g, dtype):
    """Gates in [0, 1] (float32) -> how the kernels keep them: `dtype`, rounded to the nearest 1/65535 if uint16."""
    if dtype == tf.uint16:
        return tf.cast(tf.cast(g * _GATE_SCALE + 0.5, tf.int32), tf.uint16)
    return tf.cast(g, dtype)


def unpack_gates(g):
    """The inverse of `pack_gates`: float32 gates."""
    if g.dtype == tf.uint16:
        return tf.cast(tf.cast(g, tf.int32), tf.float32) * (1.0 / _GATE_SCALE)
    return tf.cast(g, tf.float32)


# Steps per backward chunk: large enough that each weight-gradient product has batch x 32 rows (thousands), small
# enough that a chunk's per-step gradients are a sixteenth of a 512-step sequence's. 32 and 64 train equally fast.
CHUNK = 32


def pad_time(x, capacity):
    """x [T, ...] -> [capacity, ...], zeros after step T."""
    return tf.pad(x, [[0, capacity - tf.shape(x)[0]]] + [[0, 0]] * (x.shape.rank - 1))


def capacity_for(steps):
    """The compiled length that holds `steps` steps."""
    return (tf.maximum(steps, 1) + CAPACITY - 1) // CAPACITY * CAPACITY


def lstm_forward(z, c_prev):
    """One LSTM step from pre-activations `z` [batch, 4u] -> (the gates i, f, o [batch, 3u], c, h).

    The input gate j is not returned: the backward pass rebuilds it from c (see `lstm_backward`), so the
    per-step arrays a training kernel keeps are a quarter smaller.
    """
    i, j, f, o = tf.split(z, 4, axis=-1)                       # each [batch, u]
    i, j, f, o = tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f + FORGET_BIAS), tf.sigmoid(o)
    c = c_prev * f + i * j                                     # [batch, u]
    h = tf.tanh(c) * o                                         # [batch, u]
    return tf.concat([i, f, o], -1), c, h


def lstm_step(x, c, h, kernel, bias):
    """TF1 BasicLSTMCell: x [batch, in], c, h [batch, u], kernel [in + u, 4u] -> (c, h)."""
    _, c, h = lstm_forward(tf.matmul(tf.concat([x, h], -1), kernel) + bias, c)
    return c, h


def hidden_before(gates, c, s, rows: int):
    """h = o tanh(c) of steps s-1 .. s+rows-2 ([rows, batch, u], zeros for step -1) from the kept gates
    [T, batch, 3u] and c [T, batch, u] (T >= s + rows): the backward passes rebuild h rather than keep a copy of
    it for every step. One compiled pass for any s: as TensorFlow ops the gates' unpacking,
    tanh and product took 50 µs per time step of a 64-sequence shard."""
    return _hidden_before(gates, c, s, rows)


@tf.function(jit_compile=True)   # traced per shape: the slices need the static width u
def _hidden_before(gates, c, s, rows):
    batch, u = tf.shape(c)[1], c.shape[-1]

    def h_from(start, n):                                      # h of steps start .. start + n - 1
        o = xla.dynamic_slice(gates, tf.stack([start, 0, 2 * u]), [n, batch, u])
        return unpack_gates(o) * tf.tanh(xla.dynamic_slice(c, tf.stack([start, 0, 0]), [n, batch, u]))
    # A conditional, not a select between h and h shifted by a row: XLA fused that select into one kernel that
    # computed both and took 1.15 ms per call in a training step's profile (33 x 64 x 128), against 0.34 now.
    return tf.cond(s > 0, lambda: h_from(s - 1, rows),
                   lambda: tf.concat([tf.zeros([1, batch, u]), h_from(0, rows - 1)], 0))


def lstm_backward(gates, c, c_prev, dh, dc):
    """Backward of `lstm_forward` from its gates [i, f, o] (`gates_at`): (dz [batch, 4u] in TF1 order i, j, f, o,
    dc_prev).

    j comes back from c = f c_prev + i j. Where i is tiny the quotient is inexact, but every term that uses j
    is multiplied by i again (or by 1 - j^2, bounded once j is clipped to tanh's range), so the gradient keeps
    float32's accuracy; i j itself is taken straight from c.
    """
    i, f, o = gates                                            # each [batch, u]
    ij = c - f * c_prev                                        # i * j
    j = tf.clip_by_value(tf.math.divide_no_nan(ij, i), -1.0, 1.0)
    tc = tf.tanh(c)
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = tf.concat([dc * ij * (1.0 - i), dc * i * (1.0 - j * j),
                    dc * c_prev * f * (1.0 - f), dh * tc * o * (1.0 - o)], -1)
    return dz, dc * f


def row(stack, t, start=0, size=None):
    """stack[t, ..., start:start + size] [batch, ...] for a step t >= 0, as one slice. Indexing `stack[t]` also
    accepts t < 0, and slicing the row again afterwards makes XLA compute the row's address for every element
    of a fusion that reads it: either way the reloaded index keeps LLVM from vectorizing the whole fusion."""
    rank, shape = stack.shape.rank, tf.shape(stack)
    begin = tf.concat([[t], tf.zeros([rank - 2], tf.int32), [start]], 0)
    size = tf.concat([[1], shape[1:-1], [shape[-1] - start if size is None else size]], 0)
    return tf.slice(stack, begin, size)[0]


def gates_at(gates, t):
    """Step t's gates i, f, o [batch, u] each, as floats, from the kept [T, batch, 3u] (see `row`)."""
    u = gates.shape[-1] // 3
    return [unpack_gates(row(gates, t, k * u, u)) for k in range(3)]


def before(stack, t):
    """stack[t - 1] [batch, ...], or zeros at t = 0: the value step t started from."""
    return row(stack, tf.maximum(t - 1, 0)) * tf.cast(t > 0, stack.dtype)


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


def sum_outer_and_sum(x, dy):
    """(sum_t x[t]^T dy[t] [n, m], the sum of dy over time and batch [m]) from one matrix product: a weight
    gradient and its bias's. x gets a column of ones, so the bias gradient is the product's last row. For the LSTM
    pre-activations' gradients (m = 4u = 512, a chunk is 4 MB) TensorFlow's CPU sum over the [T * batch] rows takes
    1.3 ms, the extra row 0.2 ms; for m = 128 the plain sum is the faster."""
    ones = tf.ones(tf.concat([tf.shape(x)[:-1], [1]], 0), x.dtype)
    both = sum_outer(tf.concat([x, ones], -1), dy)
    return both[:-1], both[-1]


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


def dropped(x, keep, keep_prob):
    """Dropout on x where `keep` (bool, x's shape) is False, scaled as tf.nn.dropout; x itself if keep is None.
    A select, so that a gradient through it needs only the 1-byte `keep`."""
    return x if keep is None else tf.where(keep, x * (1.0 / keep_prob), tf.zeros_like(x))


class LSTMRecurrence:
    """A plain LSTM layer over a sequence with a hand-written backward pass (the layers after the attention
    wrapper in the 2017 layout). Call with x [T, batch, n], a TF1 kernel [n + u, 4u] and bias [4u], and
    optionally `keep` [T, batch, n] (bool) for dropout on x with keep probability `keep_prob`; returns
    h [T, batch, u]. Dropout is applied inside, so that the backward pass keeps x and the 1-byte `keep` and
    the dropped copy of x exists only a chunk at a time."""

    def __init__(self, chunk: int = CHUNK, keep_prob: float = 1.0, gate_dtype=GATE_DTYPE):
        self.chunk, self.keep_prob, self.gate_dtype = chunk, keep_prob, gate_dtype
        # One compiled forward with dropout and one without: TensorFlow cannot relax one function's signature
        # across calls with different numbers of arguments.
        self._forwards = [tf.function(self._forward_loop, jit_compile=True, reduce_retracing=True) for _ in (0, 1)]
        self._backward = tf.function(self._backward_chunk, jit_compile=True, reduce_retracing=True)

    def __call__(self, x, kernel, bias, keep=None):
        @tf.custom_gradient
        def run(x, kernel, bias, *keep):
            steps, width = tf.shape(x)[0], x.shape[-1]
            capacity = capacity_for(steps)
            gates, c, h = self._forwards[len(keep)](steps, tf.stop_gradient(pad_time(x, capacity)),
                                                    tf.stop_gradient(kernel), tf.stop_gradient(bias),
                                                    *[pad_time(k, capacity) for k in keep])
            mask = keep[0] if keep else None

            def grad(d_h):
                d_h, kx, kh = pad_time(d_h, capacity), kernel[:width], kernel[width:]
                kh_t = tf.transpose(kh)          # once, not per step: see AttentionRecurrence._transposed

                def run_chunk(s, e, carry, grads):
                    dz, *carry = self._backward(s, e, d_h, gates, c, kh_t, *carry)
                    dz = dz[:e - s]                                                # [e - s, batch, 4u]
                    d_kernel, d_bias, d_x = grads
                    keep_c = None if mask is None else mask[s:e]
                    d_kh, d_b = sum_outer_and_sum(hidden_before(gates, c, s, self.chunk)[:e - s], dz)  # h_{t-1}
                    d_kernel += tf.concat([sum_outer(dropped(x[s:e], keep_c, self.keep_prob), dz), d_kh], 0)
                    d_x_c = dropped(project(dz, kx, transpose_w=True), keep_c, self.keep_prob)
                    return carry, (d_kernel, d_bias + d_b, d_x.write(s // self.chunk, d_x_c))

                zero = tf.zeros_like(c[0])                                         # [batch, u]
                chunks = tf.TensorArray(tf.float32, size=(steps + self.chunk - 1) // self.chunk, infer_shape=False)
                _, (d_kernel, d_bias, d_x) = backward_by_chunks(
                    steps, self.chunk, [zero, zero], (tf.zeros_like(kernel), tf.zeros_like(bias), chunks), run_chunk)
                return [tf.ensure_shape(d_x.concat(), x.shape), d_kernel, d_bias] + [None] * len(keep)
            return h[:steps], grad
        # Read the variables here: the gradient flows to them as usual.
        args = [tf.convert_to_tensor(t) for t in (x, kernel, bias)] + ([] if keep is None else [keep])
        return run(*args)

    def _forward_loop(self, steps, x, kernel, bias, *keep):
        """Runs `steps` steps of x padded to a capacity; returns capacity-long gates, c, h."""
        capacity, batch, units = tf.shape(x)[0], tf.shape(x)[1], kernel.shape[1] // 4
        arrays = [tf.TensorArray(dtype, size=capacity) for dtype in (self.gate_dtype, tf.float32, tf.float32)]

        def body(t, c, h, arrays):
            # The input projection inside the loop: precomputed for every step it would need two more
            # [T, batch, 4u] buffers while the loop runs, for the same arithmetic.
            x_t = dropped(row(x, t), row(keep[0], t) if keep else None, self.keep_prob)
            g, c, h = lstm_forward(tf.matmul(tf.concat([x_t, h], -1), kernel) + bias, c)   # [batch, 3u], ...
            return t + 1, c, h, [ta.write(t, v) for ta, v in zip(arrays, (pack_gates(g, self.gate_dtype), c, h))]

        zero = tf.zeros([batch, units])
        *_, arrays = tf.while_loop(lambda t, *_: t < steps, body, (0, zero, zero, arrays),
                                   maximum_iterations=steps)
        return [ta.stack() for ta in arrays]

    def _backward_chunk(self, s, e, d_h_ext, gates, cs, kh_t, dc, dh):
        """Steps e-1 .. s backward from the recurrent gradients (dc, dh) of step e; returns dz [chunk, batch, 4u]
        (row t - s for step t) and the recurrent gradients of step s. `kh_t` is the recurrent kernel transposed."""
        dz_array = tf.TensorArray(tf.float32, size=self.chunk)

        def body(t, dc, dh, dz_array):
            dz, dc = lstm_backward(gates_at(gates, t), row(cs, t), before(cs, t), dh + row(d_h_ext, t), dc)
            return t - 1, dc, tf.matmul(dz, kh_t), dz_array.write(t - s, dz)

        _, dc, dh, dz_array = tf.while_loop(lambda t, *_: t >= s, body, (e - 1, dc, dh, dz_array),
                                            maximum_iterations=self.chunk)
        return dz_array.stack(), dc, dh

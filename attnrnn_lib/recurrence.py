"""The training kernel: the attention recurrence over a whole sequence, with a hand-written backward pass.

`attention_cell.py` states the model one step at a time; this module computes exactly the same numbers for a
whole batch of sequences at once, fast enough to train on a laptop CPU. Why it exists (see perf/NOTES.md):
letting TensorFlow differentiate through the step makes it keep the `[batch, attn_length, units]` window of
every time step for the backward pass, and that costs 6.5x a plain LSTM. Here the forward loop keeps only small
per-step tensors (gates, cell states, query, attention weights), and the backward loop rebuilds each window as
a slice of the output history. Both loops are compiled with XLA, which fuses the window arithmetic.

The window is never copied: every output and its key are written once into a history buffer `[L + T, batch, A]`
and each step reads its window as a slice of it; the backward pass adds each slot's gradient straight into a
buffer of the same shape. Sequences are padded to 128 steps or a multiple of 512 before they enter XLA and the
loops stop at the real length, so all bucket lengths share two compiled kernels (two compilations, two sets of
buffers) instead of compiling a new one per padded length; the weight-gradient contractions then run outside
XLA on the real steps only.

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
# Compiled time lengths. Short batches get a short one: the loops stop at the real length, but every buffer is
# zero-filled at full capacity. 512 is Magenta's longest training sequence; longer inputs use a multiple of it.
SHORT_CAPACITY, CAPACITY = 128, 512


def _pad_time(x, capacity):
    """x [T, ...] -> [capacity, ...], zeros after step T."""
    return tf.pad(x, [[0, capacity - tf.shape(x)[0]]] + [[0, 0]] * (x.shape.rank - 1))


def _capacity(steps):
    long = (tf.maximum(steps, 1) + CAPACITY - 1) // CAPACITY * CAPACITY
    return tf.where(steps <= SHORT_CAPACITY, SHORT_CAPACITY, long)


def _lstm_forward(z, c_prev):
    """One LSTM step from pre-activations `z` [batch, 4u] -> (activated gates [batch, 4u], c, h)."""
    i, j, f, o = tf.split(z, 4, axis=-1)                       # each [batch, u]
    i, j, f, o = tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f + FORGET_BIAS), tf.sigmoid(o)
    c = c_prev * f + i * j                                     # [batch, u]
    h = tf.tanh(c) * o                                         # [batch, u]
    return tf.concat([i, j, f, o], -1), c, h


def lstm_step(x, c, h, kernel, bias):
    """TF1 BasicLSTMCell: x [batch, in], c, h [batch, u], kernel [in + u, 4u] -> (c, h)."""
    _, c, h = _lstm_forward(tf.matmul(tf.concat([x, h], -1), kernel) + bias, c)
    return c, h


def _lstm_backward(gates, c, c_prev, dh, dc):
    """Backward of `_lstm_forward`: (dz [batch, 4u], dc_prev [batch, u])."""
    i, j, f, o = tf.split(gates, 4, axis=-1)                   # each [batch, u]
    tc = tf.tanh(c)
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = tf.concat([dc * j * i * (1.0 - i), dc * i * (1.0 - j * j),
                    dc * c_prev * f * (1.0 - f), dh * tc * o * (1.0 - o)], -1)
    return dz, dc * f


def _before(stack, t):
    """stack[t - 1] [batch, ...], or zeros at t = 0: the value step t started from."""
    return stack[tf.maximum(t - 1, 0)] * tf.cast(t > 0, stack.dtype)


def _window(hist, t, length):
    """Rows t .. t+length-1 of a history buffer [L + T, batch, A] (a dynamic slice, fused by XLA)."""
    # Explicit sizes, not -1: XLA lowers a "to the end" size from a dynamic start by padding the whole buffer.
    return tf.slice(hist, tf.stack([t, 0, 0]), tf.concat([[length], tf.shape(hist)[1:]], 0))


def _put(hist, t, row):
    """`hist` with row t replaced by `row` [batch, A] (in place under XLA)."""
    return tf.tensor_scatter_nd_update(hist, [[t]], row[None])


def _add_rows(hist, t, rows):
    """`hist` with `rows` [L, batch, A] added to its rows t .. t+L-1 (in place; backward only, XLA only)."""
    begin = tf.stack([t, 0, 0])
    return xla.dynamic_update_slice(hist, tf.slice(hist, begin, tf.shape(rows)) + rows, begin)


def _rows(x):
    """[..., n] -> [rows, n]: every leading axis as one, so a contraction is a single MatMul (TensorFlow's CPU
    einsum runs the same contractions 1.3-1.8x slower)."""
    return tf.reshape(x, [-1, tf.shape(x)[-1]])


def _sum_outer(x, dy):
    """sum_t x[t]^T dy[t] for x [T, batch, n], dy [T, batch, m] -> [n, m]: a weight gradient."""
    return tf.matmul(_rows(x), _rows(dy), transpose_a=True)


def project(x, w):
    """x [..., n] @ w [n, m] -> [..., m]."""
    return tf.reshape(tf.matmul(_rows(x), w), tf.concat([tf.shape(x)[:-1], tf.shape(w)[-1:]], 0))


def _sum_outer_previous(x, dy):
    """sum_t x[t-1]^T dy[t] (x one step late, zero before the start) without building the shifted copy."""
    return _sum_outer(x[:-1], dy[1:])


class AttentionRecurrence:
    """The attention wrapper around a stack of `n` LSTMs, run over a whole sequence.

    Variant B (2017) is a stack of one LSTM; Variant A (2016) wraps every layer. Dropout masks are sampled by the
    caller (so the kernel stays deterministic) and applied to each inner layer's output as SPEC §3.3 says.

    Call with (all float32):
      z1x:   [T, batch, 4*u1]      x_t·K_in_x·K1_x + b_in·K1_x + b1, precomputed for every step at once.
      m1:    [A + u1, 4*u1]        recurrent matrix of layer 1 for [a_prev ; h1_prev].
      kernels, biases: layers 2..n of the stack, [u_{k-1} + u_k, 4*u_k] and [4*u_k].
      masks: one [T, batch, u_k] per inner layer that has dropout (`has_mask` says which), scaled by 1/keep.
      kq [S, A], bq [A], u [A, A], v [A], ko [u_n + A, A], bo [A] as SPEC §3.1.
    Returns:
      o:     [T, batch, A]         the wrapper's outputs (what the window stores).
      alpha: [T, batch, L]         the attention weights (not differentiated).
    """

    def __init__(self, sizes: tuple[int, ...], attn_length: int, has_mask: tuple[bool, ...]):
        self.sizes, self.attn_length, self.has_mask = tuple(sizes), attn_length, tuple(has_mask)
        self._forward = tf.function(self._forward_loop, jit_compile=True, reduce_retracing=True)
        self._backward = tf.function(self._backward_loop, jit_compile=True, reduce_retracing=True)

    def _unpack(self, args):
        n, nm = len(self.sizes), sum(self.has_mask)
        z1x, m1 = args[0], args[1]
        kernels, biases = list(args[2:n + 1]), list(args[n + 1:2 * n])
        mask_list = list(args[2 * n:2 * n + nm])
        masks = [mask_list.pop(0) if has else None for has in self.has_mask]
        kq, bq, u, v, ko, bo = args[2 * n + nm:]
        return z1x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo

    def __call__(self, *args):
        args = [tf.convert_to_tensor(x) for x in args]   # read variables here: the gradient flows to them as usual
        n, nm, L = len(self.sizes), sum(self.has_mask), self.attn_length

        @tf.custom_gradient
        def run(*args):
            steps = tf.shape(args[0])[0]
            capacity = _capacity(steps)
            # Per-step inputs padded to the compiled length; stop_gradient: the forward loop must not record
            # itself for autodiff (that is the cost we avoid).
            padded = [tf.stop_gradient(_pad_time(x, capacity) if i == 0 or 2 * n <= i < 2 * n + nm else x)
                      for i, x in enumerate(args)]
            saved = self._forward(steps, *padded)
            o, alpha = saved["o_hist"][L:L + steps], saved["alpha"][:steps]

            def grad(d_o, d_alpha):
                del d_alpha  # the weights are shown, never trained on
                # Everything but z1x: the backward never reads it, so it need not stay alive until then.
                per_step = self._backward(steps, _pad_time(d_o, capacity), saved, *padded[1:])
                return self._weight_gradients(steps, per_step, saved, args)
            return (o, tf.transpose(alpha, [0, 2, 1])), grad       # alpha -> [T, batch, L]
        return run(*args)

    def _weight_gradients(self, steps, per_step, saved, args):
        """Every gradient from the backward loop's per-step results: one contraction over the real steps each."""
        z1x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack(args)
        n, L = len(self.sizes), self.attn_length
        dz = [x[:steps] for x in per_step["dz"]]                     # [T, batch, 4u_k] each
        d_q, d_o, d_key = per_step["d_q"][:steps], per_step["d_o"][:steps], per_step["d_key"][:steps]
        hs, a = [x[:steps] for x in saved["h"]], saved["a"][:steps]
        cs = [x[:steps] for x in saved["c"]]
        masks = [None if m is None else m[:steps] for m in masks]
        d_m1 = tf.concat([_sum_outer_previous(a, dz[0]), _sum_outer_previous(hs[0], dz[0])], 0)
        d_kernels, d_biases = [], []
        for k in range(1, n):
            below = hs[k - 1] if masks[k - 1] is None else hs[k - 1] * masks[k - 1]
            d_kernels.append(tf.concat([_sum_outer(below, dz[k]), _sum_outer_previous(hs[k], dz[k])], 0))
            d_biases.append(tf.reduce_sum(dz[k], [0, 1]))
        d_kq = tf.concat([_sum_outer(x, d_q) for ch in zip(cs, hs) for x in ch], 0)  # rows in nest order
        out = hs[-1] if masks[-1] is None else hs[-1] * masks[-1]
        d_ko = tf.concat([_sum_outer(out, d_o), _sum_outer(a, d_o)], 0)
        d_u = _sum_outer(saved["o_hist"][L:L + steps], d_key)
        return ([dz[0], d_m1] + d_kernels + d_biases + [None] * sum(self.has_mask) +
                [d_kq, tf.reduce_sum(d_q, [0, 1]), d_u, per_step["dv"], d_ko, tf.reduce_sum(d_o, [0, 1])])

    # ---------------------------------------------------------------- forward
    def _step(self, x1, state, kernels, biases, masks_t, kq, bq, u, v, ko, bo, m1, t):
        """One step. `state` = (cs, hs, a, o_hist, k_hist); returns the new state and what backward needs."""
        cs, hs, a, o_hist, k_hist = state
        L = self.attn_length
        wk, wv = _window(k_hist, t, L), _window(o_hist, t, L)       # [L, batch, A]: outputs t-L .. t-1
        gates, new_c, new_h = [], [], []
        z = x1 + tf.matmul(tf.concat([a, hs[0]], -1), m1)          # [batch, 4*u1]
        for k in range(len(self.sizes)):
            if k > 0:
                below = new_h[k - 1] if masks_t[k - 1] is None else new_h[k - 1] * masks_t[k - 1]
                z = tf.matmul(tf.concat([below, hs[k]], -1), kernels[k - 1]) + biases[k - 1]
            g, c, h = _lstm_forward(z, cs[k])
            gates.append(g), new_c.append(c), new_h.append(h)
        s = tf.concat([t_ for ch in zip(new_c, new_h) for t_ in ch], -1)  # [batch, S] in nest order
        q = tf.matmul(s, kq) + bq                                    # [batch, A]
        e = tf.einsum("lba,a->lb", tf.tanh(wk + q[None]), v)          # [L, batch]
        alpha = tf.nn.softmax(e, axis=0)                             # [L, batch]
        a = tf.reduce_sum(alpha[:, :, None] * wv, 0)                 # [batch, A]
        out = new_h[-1] if masks_t[-1] is None else new_h[-1] * masks_t[-1]
        o = tf.matmul(tf.concat([out, a], -1), ko) + bo              # [batch, A]
        o_hist, k_hist = _put(o_hist, t + L, o), _put(k_hist, t + L, tf.matmul(o, u))  # keys cached as o enters
        return (new_c, new_h, a, o_hist, k_hist), (gates, new_c, new_h, q, alpha, a)

    def _forward_loop(self, steps, *args):
        """Runs `steps` steps of inputs padded to a capacity; returns capacity-long per-step arrays."""
        z1x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack(args)
        capacity, batch = tf.shape(z1x)[0], tf.shape(z1x)[1]
        units, L = self.sizes, self.attn_length
        width = u.shape[0]
        n = len(units)
        zeros = lambda d: tf.zeros([batch, d])                        # noqa: E731
        hist = tf.zeros([L + capacity, batch, width])
        state = ([zeros(d) for d in units], [zeros(d) for d in units], zeros(width), hist, hist)
        arrays = [tf.TensorArray(tf.float32, size=capacity) for _ in range(3 * n + 3)]

        def body(t, state, arrays):
            masks_t = [None if m is None else m[t] for m in masks]
            state, (gates, cs, hs, q, alpha, a) = self._step(z1x[t], state, kernels, biases, masks_t,
                                                             kq, bq, u, v, ko, bo, m1, t)
            items = gates + cs + hs + [q, alpha, a]
            return t + 1, state, [ta.write(t, x) for ta, x in zip(arrays, items)]

        _, state, arrays = tf.while_loop(lambda t, *_: t < steps, body, (0, state, arrays),
                                         maximum_iterations=steps)
        st = [ta.stack() for ta in arrays]
        return {"gates": st[:n], "c": st[n:2 * n], "h": st[2 * n:3 * n], "q": st[3 * n],
                "alpha": st[3 * n + 1], "a": st[3 * n + 2], "o_hist": state[3], "k_hist": state[4]}

    # --------------------------------------------------------------- backward
    def _backward_loop(self, steps, d_o_ext, saved, *args):
        """Steps `steps - 1` .. 0 backward; returns the per-step gradients (capacity-long) and d v.
        `args` are the call's arguments without z1x."""
        _, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack((None,) + args)
        units, L, n = self.sizes, self.attn_length, len(self.sizes)
        capacity, batch = tf.shape(d_o_ext)[0], tf.shape(d_o_ext)[1]
        width = u.shape[0]
        gates, cs, hs, qs, alphas = saved["gates"], saved["c"], saved["h"], saved["q"], saved["alpha"]
        o_hist, k_hist = saved["o_hist"], saved["k_hist"]            # [L + T, batch, A]; row L + t holds o_t
        zeros = lambda d: tf.zeros([batch, d])                        # noqa: E731
        # d_o_hist / d_k_hist collect the gradient of every window slot that read o_t / its key (row L + t);
        # by the time the loop reaches step t, every later step has added to row L + t.
        hist = tf.zeros([L + capacity, batch, width])
        carry = ([zeros(d) for d in units], [zeros(d) for d in units], zeros(width), hist, hist,
                 tf.zeros([width]))
        arrays = [tf.TensorArray(tf.float32, size=capacity) for _ in range(n + 2)]
        s_sizes = [d for d in units for _ in (0, 1)]                  # c1, h1, c2, h2, ...

        def body(t, carry, arrays):
            dcs, dhs, da_next, d_ohist, d_khist, dv = carry
            d_key = _window(d_khist, t + L, 1)[0]                     # [batch, A]; o_t's key is now complete
            d_o = d_o_ext[t] + _window(d_ohist, t + L, 1)[0] + tf.matmul(d_key, u, transpose_b=True)
            d_cat = tf.matmul(d_o, ko, transpose_b=True)              # [batch, u_n + A]
            d_out, da = d_cat[:, :units[-1]], d_cat[:, units[-1]:] + da_next
            # Attention read a = sum_l alpha_l W_l, scores e_l = v . tanh(K_l + q).
            wv, wk = _window(o_hist, t, L), _window(k_hist, t, L)    # [L, batch, A]
            alpha = alphas[t]                                         # [L, batch]
            d_alpha = tf.reduce_sum(wv * da[None], -1)                # [L, batch]
            d_e = alpha * (d_alpha - tf.reduce_sum(alpha * d_alpha, 0, keepdims=True))
            th = tf.tanh(wk + qs[t][None])                            # [L, batch, A]
            d_pre = d_e[:, :, None] * v * (1.0 - th * th)             # [L, batch, A]
            dv = dv + tf.einsum("lb,lba->a", d_e, th)
            d_q = tf.reduce_sum(d_pre, 0)                             # [batch, A]
            d_ohist = _add_rows(d_ohist, t, alpha[:, :, None] * da[None])
            d_khist = _add_rows(d_khist, t, d_pre)
            d_s = tf.split(tf.matmul(d_q, kq, transpose_b=True), s_sizes, axis=-1)
            # The stack, top layer first.
            new_dcs, new_dhs, dz_list = [None] * n, [None] * n, [None] * n
            d_above = d_out
            for k in reversed(range(n)):
                d_from_above = d_above if masks[k] is None else d_above * masks[k][t]
                dh = dhs[k] + d_s[2 * k + 1] + d_from_above
                dz, new_dcs[k] = _lstm_backward(gates[k][t], cs[k][t], _before(cs[k], t), dh, dcs[k] + d_s[2 * k])
                dz_list[k] = dz
                if k > 0:
                    d_in = tf.matmul(dz, kernels[k - 1], transpose_b=True)
                    d_above, new_dhs[k] = d_in[:, :units[k - 1]], d_in[:, units[k - 1]:]
                else:
                    d_in = tf.matmul(dz, m1, transpose_b=True)
                    da_next, new_dhs[0] = d_in[:, :width], d_in[:, width:]
            items = dz_list + [d_q, d_o]
            return t - 1, (new_dcs, new_dhs, da_next, d_ohist, d_khist, dv), [ta.write(t, x) for ta, x in
                                                                             zip(arrays, items)]

        _, carry, arrays = tf.while_loop(lambda t, *_: t >= 0, body, (steps - 1, carry, arrays),
                                         maximum_iterations=steps)
        st = [ta.stack() for ta in arrays]
        return {"dz": st[:n], "d_q": st[n], "d_o": st[n + 1], "d_key": carry[4][L:], "dv": carry[5]}


class LSTMRecurrence:
    """A plain LSTM layer over a whole sequence with the same hand-written backward (the layers after the
    attention wrapper in the 2017 layout). Call with zx [T, batch, 4u] (input part plus bias, precomputed) and
    the recurrent kernel kh [u, 4u]; returns h [T, batch, u]."""

    def __init__(self):
        self._forward = tf.function(self._forward_loop, jit_compile=True, reduce_retracing=True)
        self._backward = tf.function(self._backward_loop, jit_compile=True, reduce_retracing=True)

    def __call__(self, zx, kh):
        @tf.custom_gradient
        def run(zx, kh):
            steps = tf.shape(zx)[0]
            capacity = _capacity(steps)
            gates, c, h = self._forward(steps, tf.stop_gradient(_pad_time(zx, capacity)), tf.stop_gradient(kh))

            def grad(d_h):
                dz = self._backward(steps, _pad_time(d_h, capacity), gates, c, tf.stop_gradient(kh))[:steps]
                return dz, _sum_outer_previous(h[:steps], dz)             # [T, batch, 4u], [u, 4u]
            return h[:steps], grad
        return run(zx, kh)

    def _forward_loop(self, steps, zx, kh):
        capacity, batch, units = tf.shape(zx)[0], tf.shape(zx)[1], kh.shape[0]
        arrays = [tf.TensorArray(tf.float32, size=capacity) for _ in range(3)]

        def body(t, c, h, arrays):
            g, c, h = _lstm_forward(zx[t] + tf.matmul(h, kh), c)         # [batch, 4u], [batch, u] x2
            return t + 1, c, h, [ta.write(t, x) for ta, x in zip(arrays, (g, c, h))]

        zero = tf.zeros([batch, units])
        *_, arrays = tf.while_loop(lambda t, *_: t < steps, body, (0, zero, zero, arrays),
                                   maximum_iterations=steps)
        return [ta.stack() for ta in arrays]

    def _backward_loop(self, steps, d_h_ext, gates, cs, kh):
        capacity, batch, units = tf.shape(gates)[0], tf.shape(gates)[1], kh.shape[0]
        dz_array = tf.TensorArray(tf.float32, size=capacity)

        def body(t, dc, dh, dz_array):
            dz, dc = _lstm_backward(gates[t], cs[t], _before(cs, t), dh + d_h_ext[t], dc)
            return t - 1, dc, tf.matmul(dz, kh, transpose_b=True), dz_array.write(t, dz)

        zero = tf.zeros([batch, units])
        *_, dz_array = tf.while_loop(lambda t, *_: t >= 0, body, (steps - 1, zero, zero, dz_array),
                                     maximum_iterations=steps)
        return dz_array.stack()                                              # [capacity, batch, 4u]

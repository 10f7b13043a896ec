"""The training kernel: the attention recurrence over a whole sequence, with a hand-written backward pass.

`attention_cell.py` states the model one step at a time; this module computes exactly the same numbers for a
whole batch of sequences at once, fast enough to train on a laptop CPU. Why it exists (see perf/NOTES.md):
letting TensorFlow differentiate through the step makes it keep the `[batch, attn_length, units]` window of
every time step for the backward pass, and that costs 6.5x a plain LSTM. Here the forward loop keeps only small
per-step tensors (gates, cell states, query, attention weights), and the backward loop rebuilds each window as
a slice of the output history. Both loops are compiled with XLA, which fuses the window arithmetic.

Everything is time-major: `[time, batch, ...]`. LSTM gates are in TF1 order i, j, f, o with the +1 forget bias
added at run time (SPEC §3.1), so Magenta's kernels are used as they are.
"""

from __future__ import annotations

import tensorflow as tf

FORGET_BIAS = 1.0


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


def _shift_in(window, item):
    """Drops slot 0 of `window` [L, batch, A] and appends `item` [batch, A] as slot L-1."""
    return tf.concat([window[1:], item[None]], 0)


def _shift_out(window):
    """The backward of a shift: slot l takes slot l-1's value, slot 0 starts at zero."""
    return tf.concat([tf.zeros_like(window[:1]), window[:-1]], 0)


def _previous(stack):
    """[T, ...] -> the same stack one step late, zeros first (the value each step started from)."""
    return tf.concat([tf.zeros_like(stack[:1]), stack[:-1]], 0)


def _sum_outer(x, dy):
    """sum_t x[t]^T dy[t] for x [T, batch, n], dy [T, batch, m] -> [n, m]: a weight gradient."""
    return tf.einsum("tbn,tbm->nm", x, dy)


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

        @tf.custom_gradient
        def run(*args):
            # stop_gradient: the forward loop must not record itself for autodiff (that is the cost we avoid).
            saved = self._forward(*[tf.stop_gradient(x) for x in args])
            o, alpha = saved["o"], saved["alpha"]

            def grad(d_o, d_alpha):
                del d_alpha  # the weights are shown, never trained on
                grads = self._backward(d_o, saved, *[tf.stop_gradient(x) for x in args])
                masks_at = 2 * len(self.sizes)
                return grads[:masks_at] + [None] * sum(self.has_mask) + grads[masks_at:]
            return (o, tf.transpose(alpha, [0, 2, 1])), grad       # alpha -> [T, batch, L]
        return run(*args)

    # ---------------------------------------------------------------- forward
    def _step(self, x1, state, kernels, biases, masks_t, kq, bq, u, v, ko, bo, m1):
        """One step. `state` = (cs, hs, a, wk, wv); returns the new state and what backward needs."""
        cs, hs, a, wk, wv = state
        gates, new_c, new_h = [], [], []
        z = x1 + tf.matmul(tf.concat([a, hs[0]], -1), m1)          # [batch, 4*u1]
        for k in range(len(self.sizes)):
            if k > 0:
                below = new_h[k - 1] if masks_t[k - 1] is None else new_h[k - 1] * masks_t[k - 1]
                z = tf.matmul(tf.concat([below, hs[k]], -1), kernels[k - 1]) + biases[k - 1]
            g, c, h = _lstm_forward(z, cs[k])
            gates.append(g), new_c.append(c), new_h.append(h)
        s = tf.concat([t for ch in zip(new_c, new_h) for t in ch], -1)  # [batch, S] in nest order
        q = tf.matmul(s, kq) + bq                                    # [batch, A]
        e = tf.reduce_sum(tf.tanh(wk + q[None]) * v, -1)             # [L, batch]
        alpha = tf.nn.softmax(e, axis=0)                             # [L, batch]
        a = tf.reduce_sum(alpha[:, :, None] * wv, 0)                 # [batch, A], read before the shift
        out = new_h[-1] if masks_t[-1] is None else new_h[-1] * masks_t[-1]
        o = tf.matmul(tf.concat([out, a], -1), ko) + bo              # [batch, A]
        wk, wv = _shift_in(wk, tf.matmul(o, u)), _shift_in(wv, o)    # keys cached as o enters
        return (new_c, new_h, a, wk, wv), (gates, new_c, new_h, q, alpha, a, o)

    def _forward_loop(self, *args):
        z1x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack(args)
        steps, batch = tf.shape(z1x)[0], tf.shape(z1x)[1]
        units, L = self.sizes, self.attn_length
        width = u.shape[0]
        n = len(units)
        zeros = lambda d: tf.zeros([batch, d])                        # noqa: E731
        state = ([zeros(d) for d in units], [zeros(d) for d in units], zeros(width),
                 tf.zeros([L, batch, width]), tf.zeros([L, batch, width]))
        arrays = [tf.TensorArray(tf.float32, size=steps) for _ in range(3 * n + 4)]

        def body(t, state, arrays):
            masks_t = [None if m is None else m[t] for m in masks]
            state, (gates, cs, hs, q, alpha, a, o) = self._step(z1x[t], state, kernels, biases, masks_t,
                                                                 kq, bq, u, v, ko, bo, m1)
            items = gates + cs + hs + [q, alpha, a, o]
            return t + 1, state, [ta.write(t, x) for ta, x in zip(arrays, items)]

        _, _, arrays = tf.while_loop(lambda t, *_: t < steps, body, (0, state, arrays),
                                       maximum_iterations=steps)
        st = [ta.stack() for ta in arrays]
        return {"gates": st[:n], "c": st[n:2 * n], "h": st[2 * n:3 * n], "q": st[3 * n],
                "alpha": st[3 * n + 1], "a": st[3 * n + 2], "o": st[3 * n + 3]}

    # --------------------------------------------------------------- backward
    def _backward_loop(self, d_o_ext, saved, *args):
        z1x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack(args)
        units, L, n = self.sizes, self.attn_length, len(self.sizes)
        steps, batch = tf.shape(z1x)[0], tf.shape(z1x)[1]
        width = u.shape[0]
        gates, cs, hs, qs, alphas, o_seq = (saved["gates"], saved["c"], saved["h"], saved["q"],
                                            saved["alpha"], saved["o"])
        o_hist = tf.concat([tf.zeros([L, batch, width]), o_seq], 0)   # [L + T, batch, A]; slot l of W_{t-1} = t + l
        k_hist = tf.einsum("tba,ac->tbc", o_hist, u)                  # [L + T, batch, A]
        c_prev = [_previous(c) for c in cs]
        zeros = lambda d: tf.zeros([batch, d])                        # noqa: E731
        carry = ([zeros(d) for d in units], [zeros(d) for d in units], zeros(width),
                 tf.zeros([L, batch, width]), tf.zeros([L, batch, width]), tf.zeros([width]),
                 o_hist[steps - 1:steps - 1 + L], k_hist[steps - 1:steps - 1 + L])
        arrays = [tf.TensorArray(tf.float32, size=steps) for _ in range(n + 3)]
        s_sizes = [d for d in units for _ in (0, 1)]                  # c1, h1, c2, h2, ...

        def body(t, carry, arrays):
            dcs, dhs, da_next, gv, gk, dv, wv, wk = carry
            d_key = gk[-1]                                            # [batch, A]; o_t's key is now complete
            d_o = d_o_ext[t] + gv[-1] + tf.matmul(d_key, u, transpose_b=True)
            d_cat = tf.matmul(d_o, ko, transpose_b=True)              # [batch, u_n + A]
            d_out, da = d_cat[:, :units[-1]], d_cat[:, units[-1]:] + da_next
            # Attention read a = sum_l alpha_l W_l, scores e_l = v . tanh(K_l + q).
            alpha = alphas[t]                                         # [L, batch]
            d_alpha = tf.reduce_sum(wv * da[None], -1)                # [L, batch]
            d_e = alpha * (d_alpha - tf.reduce_sum(alpha * d_alpha, 0, keepdims=True))
            th = tf.tanh(wk + qs[t][None])                            # [L, batch, A]
            d_pre = d_e[:, :, None] * v * (1.0 - th * th)             # [L, batch, A]
            dv = dv + tf.reduce_sum(d_e[:, :, None] * th, [0, 1])
            d_q = tf.reduce_sum(d_pre, 0)                             # [batch, A]
            gv = _shift_out(gv) + alpha[:, :, None] * da[None]
            gk = _shift_out(gk) + d_pre
            d_s = tf.split(tf.matmul(d_q, kq, transpose_b=True), s_sizes, axis=-1)
            # The stack, top layer first.
            new_dcs, new_dhs, dz_list = [None] * n, [None] * n, [None] * n
            d_above = d_out
            for k in reversed(range(n)):
                d_from_above = d_above if masks[k] is None else d_above * masks[k][t]
                dh = dhs[k] + d_s[2 * k + 1] + d_from_above
                dz, new_dcs[k] = _lstm_backward(gates[k][t], cs[k][t], c_prev[k][t], dh, dcs[k] + d_s[2 * k])
                dz_list[k] = dz
                if k > 0:
                    d_in = tf.matmul(dz, kernels[k - 1], transpose_b=True)
                    d_above, new_dhs[k] = d_in[:, :units[k - 1]], d_in[:, units[k - 1]:]
                else:
                    d_in = tf.matmul(dz, m1, transpose_b=True)
                    da_next, new_dhs[0] = d_in[:, :width], d_in[:, width:]
            items = dz_list + [d_q, d_o, d_key]
            older = tf.maximum(t - 1, 0)
            wv = tf.concat([o_hist[older][None], wv[:-1]], 0)
            wk = tf.concat([k_hist[older][None], wk[:-1]], 0)
            return t - 1, (new_dcs, new_dhs, da_next, gv, gk, dv, wv, wk), [ta.write(t, x) for ta, x in
                                                                      zip(arrays, items)]

        _, carry, arrays = tf.while_loop(lambda t, *_: t >= 0, body, (steps - 1, carry, arrays),
                                        maximum_iterations=steps)
        st = [ta.stack() for ta in arrays]
        dz, d_q, d_o, d_key = st[:n], st[n], st[n + 1], st[n + 2]
        dv = carry[5]
        # Weight gradients: one big contraction over all steps each, outside the loop.
        d_m1 = _sum_outer(tf.concat([_previous(saved["a"]), _previous(hs[0])], -1), dz[0])
        d_kernels, d_biases = [], []
        for k in range(1, n):
            below = hs[k - 1] if masks[k - 1] is None else hs[k - 1] * masks[k - 1]
            d_kernels.append(_sum_outer(tf.concat([below, _previous(hs[k])], -1), dz[k]))
            d_biases.append(tf.reduce_sum(dz[k], [0, 1]))
        s_seq = tf.concat([t for ch in zip(cs, hs) for t in ch], -1)  # [T, batch, S]
        out = hs[-1] if masks[-1] is None else hs[-1] * masks[-1]
        d_ko = _sum_outer(tf.concat([out, saved["a"]], -1), d_o)
        d_u = _sum_outer(o_seq, d_key)
        return [dz[0], d_m1] + d_kernels + d_biases + [_sum_outer(s_seq, d_q), tf.reduce_sum(d_q, [0, 1]), d_u, dv, d_ko,
                        tf.reduce_sum(d_o, [0, 1])]


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
            gates, c, h = self._forward(tf.stop_gradient(zx), tf.stop_gradient(kh))
            return h, lambda d_h: self._backward(d_h, gates, c, h, tf.stop_gradient(kh))
        return run(zx, kh)

    def _forward_loop(self, zx, kh):
        steps, batch, units = tf.shape(zx)[0], tf.shape(zx)[1], kh.shape[0]
        arrays = [tf.TensorArray(tf.float32, size=steps) for _ in range(3)]

        def body(t, c, h, arrays):
            g, c, h = _lstm_forward(zx[t] + tf.matmul(h, kh), c)         # [batch, 4u], [batch, u] x2
            return t + 1, c, h, [ta.write(t, x) for ta, x in zip(arrays, (g, c, h))]

        zero = tf.zeros([batch, units])
        *_, arrays = tf.while_loop(lambda t, *_: t < steps, body, (0, zero, zero, arrays),
                                   maximum_iterations=steps)
        return [ta.stack() for ta in arrays]

    def _backward_loop(self, d_h_ext, gates, cs, hs, kh):
        steps, batch, units = tf.shape(gates)[0], tf.shape(gates)[1], kh.shape[0]
        c_prev = _previous(cs)
        dz_array = tf.TensorArray(tf.float32, size=steps)

        def body(t, dc, dh, dz_array):
            dz, dc = _lstm_backward(gates[t], cs[t], c_prev[t], dh + d_h_ext[t], dc)
            return t - 1, dc, tf.matmul(dz, kh, transpose_b=True), dz_array.write(t, dz)

        zero = tf.zeros([batch, units])
        *_, dz_array = tf.while_loop(lambda t, *_: t >= 0, body, (steps - 1, zero, zero, dz_array),
                                     maximum_iterations=steps)
        dz = dz_array.stack()                                                # [T, batch, 4u]
        return dz, _sum_outer(_previous(hs), dz)

"""The training kernel: the attention recurrence over a whole sequence, with a hand-written backward pass.

`attention_cell.py` states the model one step at a time; this module computes exactly the same numbers for a
whole batch of sequences at once, fast enough to train on a laptop CPU. Why it exists (see perf/NOTES.md):
letting TensorFlow differentiate through the step makes it keep the `[batch, attn_length, units]` window of
every time step for the backward pass, and that costs 6.5x a plain LSTM. Here the forward loop keeps only small
per-step tensors (gates, cell states, attention weights and reads) and the output history; the backward pass
rebuilds each window as a slice of that history, and the queries, keys and hidden states from what was kept.
Both loops are compiled with XLA, which fuses the window arithmetic.

The window is never copied: every output and its key are written once into a history buffer `[L + T, batch, A]`
and each step reads its window as a slice of it. The backward pass runs in chunks of time (`lstm_recurrence.py`
says why); within a chunk each window slot's gradient is added straight into a buffer covering the chunk and
the `L` outputs before it, and the part for those `L` earlier outputs is handed on to the next chunk.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from attnrnn_lib.lstm_recurrence import (CHUNK, GATE_DTYPE, backward_by_chunks, before, capacity_for, gates_at,
                                         hidden_before, lstm_backward, lstm_forward, pack_gates, pad_time,
                                         previous_rows, project, row, sum_outer, sum_outer_and_sum)


def _window(hist, t, length):
    """Rows t .. t+length-1 of a history buffer [rows, batch, A] (a dynamic slice, fused by XLA)."""
    # Explicit sizes, not -1: XLA lowers a "to the end" size from a dynamic start by padding the whole buffer.
    return tf.slice(hist, tf.stack([t, 0, 0]), tf.concat([[length], tf.shape(hist)[1:]], 0))


def _put(hist, t, row):
    """`hist` with row t replaced by `row` [batch, A] (in place under XLA)."""
    return tf.tensor_scatter_nd_update(hist, [[t]], row[None])


def _add_rows(hist, t, rows):
    """`hist` with `rows` [n, batch, A] added to its rows t .. t+n-1 (in place; XLA only)."""
    begin = tf.stack([t, 0, 0])
    return xla.dynamic_update_slice(hist, tf.slice(hist, begin, tf.shape(rows)) + rows, begin)


class AttentionRecurrence:
    """The attention wrapper around a stack of `n` LSTMs, run over a whole sequence.

    Variant B (2017) is a stack of one LSTM; Variant A (2016) wraps every layer. Dropout masks are sampled by the
    caller (so the kernel stays deterministic) and applied to each inner layer's output as SPEC §3.3 says.

    Call with (all float32):
      x:     [T, batch, 74]        the encoded inputs (any number type: training batches are int8).
      w_x, b_x: [74, 4*u1], [4*u1] x's part of layer 1's pre-activation: x·K_in_x·K1_x + b_in·K1_x + b1.
      m1:    [A + u1, 4*u1]        recurrent matrix of layer 1 for [a_prev ; h1_prev].
      kernels, biases: layers 2..n of the stack, [u_{k-1} + u_k, 4*u_k] and [4*u_k].
      masks: one [T, batch, u_k] per inner layer that has dropout (`has_mask` says which), scaled by 1/keep.
      kq [S, A], bq [A], u [A, A], v [A], ko [u_n + A, A], bo [A] as SPEC §3.1.
    Returns:
      o:     [T, batch, A]         the wrapper's outputs (what the window stores).
      alpha: [T, batch, L]         the attention weights (not differentiated).
    """

    def __init__(self, sizes: tuple[int, ...], attn_length: int, has_mask: tuple[bool, ...], chunk: int = CHUNK,
                 gate_dtype=GATE_DTYPE):
        self.sizes, self.attn_length, self.has_mask, self.chunk = tuple(sizes), attn_length, tuple(has_mask), chunk
        self.gate_dtype = gate_dtype
        self._forward = tf.function(self._forward_loop, jit_compile=True, reduce_retracing=True)
        self._backward = tf.function(self._backward_chunk, jit_compile=True, reduce_retracing=True)

    def _unpack(self, args):
        n, nm = len(self.sizes), sum(self.has_mask)
        x, w_x, b_x, m1 = args[:4]
        kernels, biases = list(args[4:n + 3]), list(args[n + 3:2 * n + 2])
        mask_list = list(args[2 * n + 2:2 * n + 2 + nm])
        masks = [mask_list.pop(0) if has else None for has in self.has_mask]
        kq, bq, u, v, ko, bo = args[2 * n + 2 + nm:]
        return x, w_x, b_x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo

    def _per_step(self, i):
        """Whether argument i has a time axis (the inputs and the masks)."""
        n = len(self.sizes)
        return i == 0 or 2 * n + 2 <= i < 2 * n + 2 + sum(self.has_mask)

    def __call__(self, *args):
        args = [tf.convert_to_tensor(x) for x in args]   # read variables here: the gradient flows to them as usual
        L = self.attn_length

        @tf.custom_gradient
        def run(*args):
            steps = tf.shape(args[0])[0]
            capacity = capacity_for(steps)
            # Per-step inputs padded to the compiled length; stop_gradient: the forward loop must not record
            # itself for autodiff (that is the cost we avoid).
            padded = [tf.stop_gradient(pad_time(x, capacity) if self._per_step(i) else x) for i, x in enumerate(args)]
            saved = self._forward(steps, *padded)
            o, alpha = saved["o_hist"][L:L + steps], saved["alpha"][:steps]

            def grad(d_o, d_alpha):
                del d_alpha  # the weights are shown, never trained on
                return self._gradients(steps, pad_time(d_o, capacity), saved, args, padded[3:])
            return (o, tf.transpose(alpha, [0, 2, 1])), grad       # alpha -> [T, batch, L]
        return run(*args)

    def _transposed(self, loop_args):
        """The backward loop's arguments (from m1 on) with m1, the kernels, kq, u and ko transposed.

        Every product in the backward loop multiplies a gradient by a weight matrix's transpose. XLA's CPU dots
        (YNNPACK) transpose such a right-hand side again on every call, that is every step; transposed once here,
        per backward pass, the loop's products take it as it is (about 10 % more training throughput on an AVX2
        host, bench/RESULTS.md)."""
        _, _, _, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack((None,) * 3 + tuple(loop_args))
        t = tf.transpose
        return [t(m1), *map(t, kernels), *biases, *[m for m in masks if m is not None], t(kq), bq, t(u), v, t(ko), bo]

    def _gradients(self, steps, d_o_ext, saved, args, loop_args):
        """Every gradient, one backward chunk at a time: the chunk's per-step gradients go straight into the
        weight gradients (one contraction each) and are dropped."""
        x, w_x, b_x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack(args)
        n, L = len(self.sizes), self.attn_length
        zero = lambda *shape: tf.zeros(shape)                       # noqa: E731
        batch, width = tf.shape(x)[1], u.shape[0]
        carry = ([zero(batch, d) for d in self.sizes], [zero(batch, d) for d in self.sizes], zero(batch, width),
                 zero(L, batch, width), zero(L, batch, width), zero(width))
        trained = [w_x, b_x, m1, *kernels, *biases, kq, bq, u, ko, bo]
        loop_args_t = self._transposed(loop_args)

        def run_chunk(s, e, carry, grads):
            cs = [c[s:e] for c in saved["c"]]
            # h for steps s-1 .. e-1 (zero before the start): the chunk's own and the ones its steps started from.
            spans = [hidden_before(g, c, s, self.chunk + 1)[:e - s + 1] for g, c in zip(saved["gates"], saved["c"])]
            hs, h_prev = [h[1:] for h in spans], [h[:-1] for h in spans]   # [e - s, batch, u_k] each
            state = tf.concat([t for ch in zip(cs, hs) for t in ch], -1)   # [e - s, batch, S] in nest order
            # The chunk's queries and the keys its windows read, remade with two matrix products rather than
            # kept from the forward pass for every step: [chunk, batch, A] and [chunk + L, batch, A] (outputs
            # s-L .. e-1, zero before the start).
            queries = pad_time(project(state, kq) + bq, self.chunk)
            keys = pad_time(project(saved["o_hist"][s:e + L], u), self.chunk + L)
            carry, out = self._backward(s, e, d_o_ext, saved, queries, keys, carry, *loop_args_t)
            dz = [z[:e - s] for z in out["dz"]]                     # [e - s, batch, 4u_k] each
            d_q, d_o, d_key = out["d_q"][:e - s], out["d_o"][:e - s], out["d_key"][self.chunk - (e - s):]
            reads = previous_rows(saved["a"], s, e + 1)               # a_{s-1} .. a_{e-1}
            ms = [None if m is None else m[s:e] for m in masks]
            # The LSTM biases' gradients come out of the weight gradients' products (`sum_outer_and_sum`).
            new = [*sum_outer_and_sum(tf.cast(x[s:e], tf.float32), dz[0]),
                   tf.concat([sum_outer(reads[:-1], dz[0]), sum_outer(h_prev[0], dz[0])], 0)]
            d_biases = []
            for k in range(1, n):
                below = hs[k - 1] if ms[k - 1] is None else hs[k - 1] * ms[k - 1]
                d_h, d_b = sum_outer_and_sum(h_prev[k], dz[k])
                new.append(tf.concat([sum_outer(below, dz[k]), d_h], 0))
                d_biases.append(d_b)
            new += d_biases
            out_h = hs[-1] if ms[-1] is None else hs[-1] * ms[-1]
            new += [sum_outer(state, d_q), tf.reduce_sum(d_q, [0, 1]), sum_outer(saved["o_hist"][L + s:L + e], d_key),
                    tf.concat([sum_outer(out_h, d_o), sum_outer(reads[1:], d_o)], 0), tf.reduce_sum(d_o, [0, 1])]
            return carry, [g + d for g, d in zip(grads, new)]

        carry, grads = backward_by_chunks(steps, self.chunk, carry, [tf.zeros_like(w) for w in trained], run_chunk)
        d_w_x, d_b_x, d_m1 = grads[:3]
        d_kernels, d_biases = grads[3:n + 2], grads[n + 2:2 * n + 1]
        d_kq, d_bq, d_u, d_ko, d_bo = grads[2 * n + 1:]
        return ([None, d_w_x, d_b_x, d_m1] + d_kernels + d_biases + [None] * sum(self.has_mask) +
                [d_kq, d_bq, d_u, carry[5], d_ko, d_bo])

    # ---------------------------------------------------------------- forward
    def _step(self, x, state, kernels, biases, masks_t, kq, bq, u, v, ko, bo, w1, b1, t):
        """One step. `state` = (cs, hs, a, o_hist, k_hist); returns the new state and what the backward pass
        keeps of it: (gates i, f, o per layer, c per layer, alpha)."""
        cs, hs, a, o_hist, k_hist = state
        L = self.attn_length
        wk, wv = _window(k_hist, t, L), _window(o_hist, t, L)       # [L, batch, A]: outputs t-L .. t-1
        gates, new_c, new_h = [], [], []
        # The input projection inside the loop: precomputed for every step it would need two more [T, batch, 4*u1]
        # buffers while the loop runs, for the same arithmetic.
        z = tf.matmul(tf.concat([x, a, hs[0]], -1), w1) + b1        # [batch, 4*u1]
        for k in range(len(self.sizes)):
            if k > 0:
                below = new_h[k - 1] if masks_t[k - 1] is None else new_h[k - 1] * masks_t[k - 1]
                z = tf.matmul(tf.concat([below, hs[k]], -1), kernels[k - 1]) + biases[k - 1]
            g, c, h = lstm_forward(z, cs[k])
            gates.append(g), new_c.append(c), new_h.append(h)
        s = tf.concat([t_ for ch in zip(new_c, new_h) for t_ in ch], -1)  # [batch, S] in nest order
        q = tf.matmul(s, kq) + bq                                    # [batch, A]
        e = tf.einsum("lba,a->lb", tf.tanh(wk + q[None]), v)          # [L, batch]
        alpha = tf.nn.softmax(e, axis=0)                             # [L, batch]
        a = tf.reduce_sum(alpha[:, :, None] * wv, 0)                 # [batch, A]
        out = new_h[-1] if masks_t[-1] is None else new_h[-1] * masks_t[-1]
        o = tf.matmul(tf.concat([out, a], -1), ko) + bo              # [batch, A]
        o_hist, k_hist = _put(o_hist, t + L, o), _put(k_hist, t + L, tf.matmul(o, u))  # keys cached as o enters
        return (new_c, new_h, a, o_hist, k_hist), (gates, new_c, alpha)

    def _forward_loop(self, steps, *args):
        """Runs `steps` steps of inputs padded to a capacity; returns capacity-long per-step arrays."""
        x, w_x, b_x, m1, kernels, biases, masks, kq, bq, u, v, ko, bo = self._unpack(args)
        capacity, batch = tf.shape(x)[0], tf.shape(x)[1]
        units, L = self.sizes, self.attn_length
        width = u.shape[0]
        n = len(units)
        w1 = tf.concat([w_x, m1], 0)                                  # [74 + A + u1, 4*u1]
        zeros = lambda d: tf.zeros([batch, d])                        # noqa: E731
        hist = tf.zeros([L + capacity, batch, width])
        state = ([zeros(d) for d in units], [zeros(d) for d in units], zeros(width), hist, hist)
        arrays = [tf.TensorArray(self.gate_dtype if k < n else tf.float32, size=capacity) for k in range(2 * n + 2)]

        def body(t, state, arrays):
            masks_t = [None if m is None else row(m, t) for m in masks]
            state, (gates, cs, alpha) = self._step(tf.cast(row(x, t), tf.float32), state, kernels, biases, masks_t,
                                                   kq, bq, u, v, ko, bo, w1, b_x, t)
            # And the read a; not h, q, keys: rebuilt from these and o.
            items = [pack_gates(g, self.gate_dtype) for g in gates] + cs + [alpha, state[2]]
            return t + 1, state, [ta.write(t, x) for ta, x in zip(arrays, items)]

        _, state, arrays = tf.while_loop(lambda t, *_: t < steps, body, (0, state, arrays),
                                         maximum_iterations=steps)
        st = [ta.stack() for ta in arrays]
        return {"gates": st[:n], "c": st[n:2 * n], "alpha": st[2 * n], "a": st[2 * n + 1], "o_hist": state[3]}

    # --------------------------------------------------------------- backward
    def _backward_chunk(self, s, e, d_o_ext, saved, queries, keys, carry, *args):
        """Steps e-1 .. s backward. `carry` holds the recurrent gradients of step e, d v so far, and the window
        gradients already collected for the outputs e-L .. e-1; returns the same for step s (outputs s-L .. s-1)
        and the chunk's per-step gradients, [chunk, ...] with row t - s for step t. `args` start at m1, and m1,
        the kernels, kq, u and ko come transposed (`_transposed`): `m1_t` etc."""
        _, _, _, m1_t, kernels_t, biases, masks, kq_t, bq, u_t, v, ko_t, bo = self._unpack((None,) * 3 + args)
        units, L, n = self.sizes, self.attn_length, len(self.sizes)
        width, batch = u_t.shape[0], tf.shape(d_o_ext)[1]
        gates, cs, alphas, o_hist = saved["gates"], saved["c"], saved["alpha"], saved["o_hist"]  # o_t: row L + t
        dcs, dhs, da_next, tail_o, tail_k, dv = carry
        # d_ohist / d_khist row r collects the gradient of output e - chunk - L + r from every window slot that
        # read it or its key: rows chunk .. chunk+L-1 (outputs e-L .. e-1) start from what the later chunks
        # collected. By the time the loop reaches step t, every later step has added to o_t's row.
        first = e - self.chunk - L                                    # the output in row 0
        d_ohist, d_khist = [tf.concat([tf.zeros([self.chunk, batch, width]), tail], 0) for tail in (tail_o, tail_k)]
        arrays = [tf.TensorArray(tf.float32, size=self.chunk) for _ in range(n + 2)]
        s_sizes = [d for d in units for _ in (0, 1)]                  # c1, h1, c2, h2, ...
        ones = tf.ones([width])

        def body(t, i, r, carry, arrays):
            # i = t - s and r = t - first (o_t's row), each counted down on its own: computed from s or `first`
            # inside the loop they make XLA treat s or e as compile-time constants and compile once per chunk.
            dcs, dhs, da_next, d_ohist, d_khist, dv = carry
            d_key = row(d_khist, r)                                   # [batch, A]; o_t's key is now complete
            d_o = row(d_o_ext, t) + row(d_ohist, r) + tf.matmul(d_key, u_t)
            d_cat = tf.matmul(d_o, ko_t)                              # [batch, u_n + A]
            d_out, da = d_cat[:, :units[-1]], d_cat[:, units[-1]:] + da_next
            # Attention read a = sum_l alpha_l W_l, scores e_l = v . tanh(K_l + q).
            wv, wk = _window(o_hist, t, L), _window(keys, i, L)      # [L, batch, A]
            alpha = row(alphas, t)                                      # [L, batch]
            # d_alpha = sum over A of wv * da, as a product with a vector of ones: XLA then emits one
            # vectorized matrix-vector kernel with the multiply fused in, where a reduce_sum compiles to
            # the product written out and summed again (the kernel's fwd + bwd step runs about 8 % faster).
            d_alpha = tf.reshape(tf.linalg.matvec(tf.reshape(wv * da[None], [-1, width]), ones),
                                 tf.shape(alpha))                      # [L, batch]
            d_e = alpha * (d_alpha - tf.reduce_sum(alpha * d_alpha, 0, keepdims=True))
            th = tf.tanh(wk + row(queries, i)[None])                       # [L, batch, A]
            d_pre = d_e[:, :, None] * v * (1.0 - th * th)             # [L, batch, A]
            dv = dv + tf.einsum("lb,lba->a", d_e, th)
            d_q = tf.reduce_sum(d_pre, 0)                             # [batch, A]
            d_ohist = _add_rows(d_ohist, r - L, alpha[:, :, None] * da[None])   # outputs t-L .. t-1
            d_khist = _add_rows(d_khist, r - L, d_pre)
            d_s = tf.split(tf.matmul(d_q, kq_t), s_sizes, axis=-1)
            # The stack, top layer first.
            new_dcs, new_dhs, dz_list = [None] * n, [None] * n, [None] * n
            d_above = d_out
            for k in reversed(range(n)):
                d_from_above = d_above if masks[k] is None else d_above * row(masks[k], t)
                dh = dhs[k] + d_s[2 * k + 1] + d_from_above
                dz, new_dcs[k] = lstm_backward(gates_at(gates[k], t), row(cs[k], t), before(cs[k], t), dh,
                                               dcs[k] + d_s[2 * k])
                dz_list[k] = dz
                if k > 0:
                    d_in = tf.matmul(dz, kernels_t[k - 1])
                    d_above, new_dhs[k] = d_in[:, :units[k - 1]], d_in[:, units[k - 1]:]
                else:
                    d_in = tf.matmul(dz, m1_t)
                    da_next, new_dhs[0] = d_in[:, :width], d_in[:, width:]
            items = dz_list + [d_q, d_o]
            return (t - 1, i - 1, r - 1, (new_dcs, new_dhs, da_next, d_ohist, d_khist, dv),
                    [ta.write(i, x) for ta, x in zip(arrays, items)])

        _, _, _, carry, arrays = tf.while_loop(
            lambda t, i, *_: i >= 0, body, (e - 1, e - 1 - s, self.chunk + L - 1,
                                            (dcs, dhs, da_next, d_ohist, d_khist, dv), arrays),
            maximum_iterations=self.chunk)
        dcs, dhs, da_next, d_ohist, d_khist, dv = carry
        st = [ta.stack() for ta in arrays]
        # Outputs s-L .. s-1 for the next chunk. Sizes from an argument's shape: the loop results' shapes would
        # make XLA treat s and e as compile-time constants and compile once per chunk.
        tails = [xla.dynamic_slice(h, tf.stack([s - first - L, 0, 0]), [L, batch, width]) for h in (d_ohist, d_khist)]
        return ((dcs, dhs, da_next, *tails, dv),
                {"dz": st[:n], "d_q": st[n], "d_o": st[n + 1],
                 "d_key": d_khist[L:]})                                   # keys: outputs e-chunk .. e-1

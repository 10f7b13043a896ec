"""The model: Magenta's parameter counts, the fast kernel equal to the Keras cell, its hand-written gradient."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from attnrnn_lib import input_pipeline
from attnrnn_lib import model as model_module
from attnrnn_lib.attention_cell import AttentionCell
from attnrnn_lib.config import PRESETS
from attnrnn_lib.model import AttentionRNN, count_params, dropout_mask
from attnrnn_lib.lstm_recurrence import GATE_DTYPE, LSTMRecurrence
from attnrnn_lib.recurrence import AttentionRecurrence

# 16-bit fixed-point gates: measured up to 3.6e-5 of each gradient's largest entry (float16 gates: a few 1e-4).
GATE_TOLERANCE = 2e-4


@pytest.mark.parametrize("preset, sizes, expected", [
    ("magenta_2017", (128, 128), 338_006), ("magenta_2017", (64, 64), 102_166),
    ("magenta_2016", (128, 128), 370_774), ("magenta_2016", (64, 64), 110_358)])
def test_parameter_counts_equal_magentas(preset, sizes, expected):
    assert count_params(AttentionRNN(PRESETS[preset].replace(rnn_layer_sizes=sizes))) == expected


def real_inputs(files, n=4, steps=48):
    """The first `n` real melodies of a SequenceExample file, cut to `steps`: [n, steps, 74]."""
    rows = [x[:steps].numpy() for x, _ in input_pipeline.load_examples([str(files)]).take(n)]
    return tf.constant(np.stack([r for r in rows if len(r) == steps]), tf.float32)


@pytest.fixture(scope="module")
def melodies(nottingham_examples):
    return real_inputs(nottingham_examples[0])


@pytest.mark.parametrize("preset", ["magenta_2016", "magenta_2017"])
def test_fast_kernel_equals_the_keras_cell_step_by_step(preset, melodies):
    keras_seed = 1
    tf.keras.utils.set_random_seed(keras_seed)
    model = AttentionRNN(PRESETS[preset].replace(rnn_layer_sizes=(24, 20), attn_length=10))
    logits, attention = model(melodies)
    ref_logits, ref_attention = model.stepwise(melodies)
    assert logits.shape == (melodies.shape[0], 48, 40) and attention.shape == (melodies.shape[0], 48, 10)
    np.testing.assert_allclose(logits, ref_logits, atol=2e-5)
    np.testing.assert_allclose(attention, ref_attention, atol=2e-6)
    # The weights over the window sum to one; at t = 0 every slot is empty and the weights are uniform.
    np.testing.assert_allclose(tf.reduce_sum(attention, -1), 1.0, atol=1e-5)
    np.testing.assert_allclose(attention[:, 0], 0.1, atol=1e-6)
    assert float(tf.reduce_max(tf.abs(attention[:, -1] - 0.1))) > 1e-3   # later steps do attend


def test_cached_keys_equal_recomputed_keys(melodies):
    hp = PRESETS["magenta_2017"].replace(rnn_layer_sizes=(16, 16), attn_length=6)
    cached, recomputed = AttentionCell(hp), AttentionCell(hp, cache_keys=False)
    cached.build((None, 74)), recomputed.build((None, 74))
    recomputed.set_weights(cached.get_weights())
    s1, s2 = cached.zero_state(melodies.shape[0]), recomputed.zero_state(melodies.shape[0])
    for t in range(melodies.shape[1]):
        o1, s1 = cached(melodies[:, t], s1)
        o2, s2 = recomputed(melodies[:, t], s2)
        np.testing.assert_allclose(o1, o2, atol=1e-6)
    keys_from_window = tf.einsum("bla,ac->blc", s1[4], cached.attn_w)   # state: c1 h1 a keys window c2 h2
    np.testing.assert_allclose(s1[3], keys_from_window, atol=1e-6)   # the cache holds W U


def assert_gradients_close(fast, slow, gate_dtype):
    """Exact to float32 rounding with float32 gates; with 16-bit fixed-point gates (the default), within
    GATE_TOLERANCE of each gradient's largest entry."""
    if gate_dtype == tf.float32:
        np.testing.assert_allclose(fast, slow, atol=2e-6, rtol=1e-4)
    else:
        error = float(tf.reduce_max(tf.abs(fast - slow))) / float(tf.reduce_max(tf.abs(slow)))
        assert error <= GATE_TOLERANCE


@pytest.mark.parametrize("gate_dtype", [tf.float32, GATE_DTYPE])
@pytest.mark.parametrize("sizes, masked", [((8,), False), ((8, 6), True)])
def test_hand_written_backward_equals_autodiff(sizes, masked, gate_dtype):
    """The kernel's backward pass against TensorFlow differentiating the same forward loop. 13 steps in backward
    chunks of 4: a short chunk, then three whole ones each handing window gradients on to the next."""
    rng = np.random.default_rng(0)
    r = lambda *s: tf.constant(rng.normal(size=s).astype(np.float32) * 0.3)  # noqa: E731
    steps, batch, window, width, inputs = 13, 3, 5, sizes[-1], 7
    args = [r(steps, batch, inputs), r(inputs, 4 * sizes[0]), r(4 * sizes[0]), r(width + sizes[0], 4 * sizes[0])]
    args += [r(sizes[k - 1] + sizes[k], 4 * sizes[k]) for k in range(1, len(sizes))]
    args += [r(4 * sizes[k]) for k in range(1, len(sizes))]
    if masked:
        args += [tf.constant((rng.random((steps, batch, u)) > 0.5) * 2.0, tf.float32) for u in sizes]
    args += [r(2 * sum(sizes), width), r(width), r(width, width), r(width), r(sizes[-1] + width, width), r(width)]
    kernel = AttentionRecurrence(sizes, window, (masked,) * len(sizes), chunk=4, gate_dtype=gate_dtype)
    target = r(steps, batch, width)
    with tf.GradientTape() as tape:
        tape.watch(args)
        loss = tf.reduce_sum(kernel(*args)[0] * target)
    fast = tape.gradient(loss, args)
    with tf.GradientTape() as tape:
        tape.watch(args)
        loss = tf.reduce_sum(kernel._forward_loop(steps, *args)["o_hist"][window:] * target)
    slow = tape.gradient(loss, args)
    checked = 0
    for a, b in zip(fast[1:], slow[1:]):
        if a is None:  # the dropout masks are constants
            continue
        assert_gradients_close(a, b, gate_dtype)
        checked += 1
    assert fast[0] is None   # the inputs are data
    assert checked == len(args) - 1 - (len(sizes) if masked else 0)


@pytest.mark.parametrize("gate_dtype", [tf.float32, GATE_DTYPE])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_lstm_backward_equals_autodiff(with_dropout, gate_dtype):
    """The plain LSTM layer's backward pass (chunks of 4 over 10 steps), with dropout on its input or without,
    against TensorFlow's own."""
    rng = np.random.default_rng(1)
    r = lambda *s: tf.constant(rng.normal(size=s).astype(np.float32) * 0.4)  # noqa: E731
    x, kernel, bias, target = r(10, 3, 5), r(5 + 6, 24), r(24), r(10, 3, 6)
    keep = [tf.constant(rng.random((10, 3, 5)) < 0.5)] if with_dropout else []
    layer = LSTMRecurrence(chunk=4, keep_prob=0.5, gate_dtype=gate_dtype)
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        loss = tf.reduce_sum(layer(x, kernel, bias, *keep) * target)
    fast = tape.gradient(loss, [x, kernel, bias])
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        loss = tf.reduce_sum(layer._forward_loop(10, x, kernel, bias, *keep)[2] * target)
    slow = tape.gradient(loss, [x, kernel, bias])
    for a, b in zip(fast, slow):
        assert_gradients_close(a, b, gate_dtype)
    if with_dropout:   # dropped inputs get no gradient
        assert float(tf.reduce_max(tf.abs(tf.where(keep[0], 0.0, fast[0])))) == 0.0


def test_dropout_is_seeded_and_only_in_training(melodies):
    model = AttentionRNN(PRESETS["magenta_2017"].replace(rnn_layer_sizes=(16, 16), attn_length=4))
    seed = tf.constant([3, 4], tf.int64)
    a, _ = model(melodies, training=True, seed=seed)
    b, _ = model(melodies, training=True, seed=seed)
    c, _ = model(melodies, training=True, seed=tf.constant([3, 5], tf.int64))
    d, _ = model(melodies)
    np.testing.assert_array_equal(a, b)
    assert float(tf.reduce_max(tf.abs(a - c))) > 1e-3 and float(tf.reduce_max(tf.abs(a - d))) > 1e-3


@pytest.mark.parametrize("preset", ["magenta_2016", "magenta_2017"])
def test_splitting_a_batch_across_cores_changes_no_number(preset, nottingham_examples, monkeypatch):
    """On a CPU a batch runs as one piece per core; 1, 2 or 4 pieces give the same logits, attention and gradients
    (each layout splits its own dropout masks: inside the wrapper in 2016, after it in 2017)."""
    melodies = real_inputs(nottingham_examples[0], n=40, steps=24)[:32]                  # [32, 24, 74]
    assert melodies.shape[0] == 32
    model = AttentionRNN(PRESETS[preset].replace(rnn_layer_sizes=(12, 10), attn_length=5))
    results = []
    for cores in (1, 2, 4, 64):
        monkeypatch.setattr(model_module, "usable_cores", lambda: cores)
        with tf.GradientTape() as tape:
            logits, attention = model(melodies, training=True, seed=tf.constant([5, 6], tf.int64))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.argmax(melodies[:, 1:, :38], -1) + 2, logits[:, :-1]))
        results.append((model._shards(melodies), logits, attention, tape.gradient(loss, model.trainable_variables)))
    assert [r[0] for r in results] == [1, 2, 4, 4]          # 64 cores: still pieces of at least MIN_PIECE = 8
    for _, logits, attention, grads in results[1:]:
        np.testing.assert_allclose(logits, results[0][1], atol=1e-5)
        np.testing.assert_allclose(attention, results[0][2], atol=1e-6)
        for g, g1 in zip(grads, results[0][3]):
            np.testing.assert_allclose(g, g1, atol=1e-6 + 1e-4 * float(tf.reduce_max(tf.abs(g1))))


@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_dropout_mask_keeps_keep_prob_of_the_units(keep):
    seed = tf.constant([7, 1], tf.int64)
    mask = dropout_mask([33, 64, 31], keep, seed).numpy()             # an odd element count
    assert set(np.unique(mask)) == {0.0, np.float32(1 / keep)}
    assert abs(float((mask > 0).mean()) - keep) < 0.01                # 65,472 draws: 4+ standard deviations
    np.testing.assert_array_equal(mask, dropout_mask([33, 64, 31], keep, seed))
    assert not np.array_equal(mask, dropout_mask([33, 64, 31], keep, tf.constant([7, 2], tf.int64)))


_COMPILE_PROBE = """
import numpy as np, tensorflow as tf
from attnrnn_lib.lstm_recurrence import LSTMRecurrence
from attnrnn_lib.recurrence import AttentionRecurrence
rng = np.random.default_rng(0)
r = lambda *s: tf.constant(rng.normal(size=s).astype(np.float32) * 0.3)
attention, lstm = AttentionRecurrence((8,), 5, (False,), chunk=4), LSTMRecurrence(chunk=4)
weights = [r(7, 32), r(32), r(16, 32), r(16, 8), r(8), r(8, 8), r(8), r(16, 8), r(8)]
lstm_weights = [r(16, 32), r(32)]
for steps in (13, 9, 16):   # 4, 3 and 4 chunks that start at different steps
    x = r(steps, 3, 7)
    with tf.GradientTape() as tape:
        tape.watch(weights + lstm_weights)
        loss = tf.reduce_sum(lstm(attention(x, *weights)[0], *lstm_weights))
    tape.gradient(loss, weights + lstm_weights)
"""


def test_each_kernel_compiles_once_whatever_the_chunks_and_lengths():
    """XLA compiles a kernel again for every value of an argument it must treat as a constant. The backward
    chunks must take their start and end as data: compiled once per chunk start, a 512-step batch cost 16
    compilations of the attention backward (about 20 s at the start of a run, and again whenever a longer batch
    came). Counted from XLA's own log, in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_compiler=2")
    r = subprocess.run([sys.executable, "-c", _COMPILE_PROBE], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    compiled = re.findall(r"Instantly compiling for signature: __inference_(_\w+?)_\d+", r.stderr)
    # The two kernels' loops, and the h each backward chunk rebuilds (one chunk length per kernel).
    assert sorted(compiled) == ["_backward_chunk", "_backward_chunk", "_forward_loop", "_forward_loop",
                                "_hidden_before", "_hidden_before"], compiled

# %% [markdown]
# # 02 · Inside the attention cell
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attnrnn/attnrnn/blob/main/notebooks/02_attention_cell.ipynb)
#
# **What you will learn:** the attention RNN's step, equation by equation, on tiny tensors, using the library's
# real cell; what the attention window holds; and why caching the keys is the same maths but cheaper.

# %%
import os
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab: attnrnn at its pins, but Colab's own TensorFlow (GPU/TPU build) kept
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "git+https://github.com/attnrnn/attnrnn"])
    subprocess.check_call([sys.executable, "-m", "attnrnn_lib.colab"])

from attnrnn_lib import notebook_utils as nu  # first: it loads TensorFlow without its start-up notices

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from attnrnn_lib import encoding
from attnrnn_lib.attention_cell import AttentionCell, attention_scores
from attnrnn_lib.config import PRESETS

SMOKE = os.environ.get("ATTNRNN_SMOKE") == "1"

# %% [markdown]
# ## A tiny cell
# Two LSTM layers of 8 units, a window of the last 5 outputs, in the 2017 layout (attention around layer 1).

# %%
hp = PRESETS["magenta_2017"].replace(rnn_layer_sizes=(8, 8), attn_length=5)
cell = AttentionCell(hp)
for w in cell.weights:
    print(f"{w.path:32s} {tuple(w.shape)}")

# %% [markdown]
# ## One step, by hand, next to the cell
# `x~ = [x ; a_prev] K_in + b_in` → LSTM1 → `q = [c1 ; h1] K_q + b_q` → scores `e_l = v · tanh(keys_l + q)` →
# `alpha = softmax(e)` → read `a = Σ alpha_l W_l` → `o = [h1 ; a] K_o + b_o` → `o` enters the window.

# %%
x = tf.constant(encoding.encode_inputs([60, -2, 62, -2, 64, -2, 65, -2])[:1])     # [batch=1, 74]
state = cell.zero_state(1)
c1, h1, a, keys, window, c2, h2 = state
x_tilde = tf.matmul(tf.concat([x, a], -1), cell.in_kernel) + cell.in_bias         # [1, 74]
print("x~", x_tilde.shape)
z = tf.matmul(tf.concat([x_tilde, h1], -1), cell.lstm_kernels[0]) + cell.lstm_biases[0]  # [1, 32]: i, j, f, o
i, j, f, o = tf.split(z, 4, -1)
c1 = c1 * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)                        # forget bias +1 (TF1)
h1 = tf.tanh(c1) * tf.sigmoid(o)
q = tf.matmul(tf.concat([c1, h1], -1), cell.query_kernel) + cell.query_bias        # [1, 8]
alpha = tf.nn.softmax(attention_scores(keys, q, cell.attn_v), -1)                  # [1, 5]
print("alpha at t=0 (empty window: uniform):", alpha.numpy().round(3))
out, _ = cell(x, cell.zero_state(1))
print("the cell's own alpha:               ", out[:, -5:].numpy().round(3))

# %% [markdown]
# ## Watching the window fill
# Run a melody through the cell and plot alpha over time: the first steps attend to empty (zero) slots too,
# exactly like Magenta's (no masking).

# %%
melody = [60, -2, 62, -2, 64, -2, 65, -2, 67, -2, -2, -2, 65, -2, 64, -2] * (1 if SMOKE else 2)
inputs = tf.constant(encoding.encode_inputs(melody))
state, alphas = cell.zero_state(1), []
for t in range(len(melody)):
    out, state = cell(inputs[t:t + 1], state)
    alphas.append(out[0, -hp.attn_length:].numpy())
plt.imshow(np.array(alphas).T, aspect="auto", cmap="magma")
plt.xlabel("step")
plt.ylabel("window slot (4 = previous step)")
plt.colorbar(label="alpha")
plt.title("Attention weights of an untrained cell")
plt.show()

# %% [markdown]
# ## Cached keys = recomputed keys
# Magenta multiplies the whole window by `U` at every step (`keys = W U`, 40 matmuls' worth). Each slot's key only
# depends on that slot, so attnrnn computes it once, when the output enters the window. Same numbers:

# %%
slow = AttentionCell(hp, cache_keys=False)
slow.build((None, 74))
slow.set_weights(cell.get_weights())
s1, s2 = cell.zero_state(1), slow.zero_state(1)
for t in range(len(melody)):
    o1, s1 = cell(inputs[t:t + 1], s1)
    o2, s2 = slow(inputs[t:t + 1], s2)
print("largest difference:", float(tf.reduce_max(tf.abs(o1 - o2))))

# %% [markdown]
# ## What to try next
# - Switch to `PRESETS["magenta_2016"]` (attention around both layers) and compare the weight shapes.
# - `attnrnn_lib/recurrence.py` runs the same step over whole sequences with a hand-written backward pass.

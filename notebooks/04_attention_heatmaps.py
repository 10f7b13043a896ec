# %% [markdown]
# # 04 · Reading attention heatmaps
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attnrnn/attnrnn/blob/main/notebooks/04_attention_heatmaps.ipynb)
#
# **What you will learn:** what the trained model attends to on a real folk tune and on its own melody; how to
# step through the window one step at a time; and whether attention peaks one and two bars back (16, 32 steps).

# %%
import os
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab: attnrnn at its pins, but Colab's own TensorFlow (GPU/TPU build) kept
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "git+https://github.com/attnrnn/attnrnn"])
    subprocess.check_call([sys.executable, "-m", "attnrnn_lib.colab"])

from attnrnn_lib import notebook_utils as nu  # first: it loads TensorFlow without its start-up notices

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from attnrnn_lib import corpus, encoding, input_pipeline

SMOKE = os.environ.get("ATTNRNN_SMOKE") == "1"
model = nu.load_model()

# %% [markdown]
# ## A real tune
# An eval melody the model never trained on; its heatmap, with note names on the axes.

# %%
_, eval_file = corpus.default_dataset(max_files=1 if SMOKE else None)
inputs, labels = next(iter(input_pipeline.load_examples([eval_file]).take(1)))
steps = 64 if SMOKE else 128
first = int(np.argmax(inputs[0, :36])) + 48 if inputs[0, 36] > 0 else encoding.NO_EVENT   # the first event
events = encoding.decode(labels.numpy()[:steps - 1], [first])
_, attention = model(inputs[None, :steps].numpy().astype("float32"))
attention = attention[0].numpy()
nu.attention_heatmap(attention, events, title="A real tune")
plt.show()

# %% [markdown]
# ## One step at a time
# The bars show which of the previous 40 steps the model weighed when it stood at the chosen step.

# %%
def show_step(t=min(60, steps - 1)):
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.bar(np.arange(-attention.shape[1], 0), attention[t])
    ax.set_xlabel("steps back from the current step")
    ax.set_ylabel("attention")
    ax.set_title(f"step {t}: current event {nu.event_name(events[t]) or 'hold'}")
    plt.show()


widgets.interact(show_step, t=widgets.IntSlider(min=0, max=steps - 1, value=min(60, steps - 1)))
show_step()

# %% [markdown]
# ## Does it look one bar back?
# The mean attention by distance over many melodies. Peaks at 16 or 32 would be "one bar / two bars ago".

# %%
batch = [x[:steps] for x, _ in input_pipeline.load_examples([eval_file]).take(8 if SMOKE else 64)]
batch = np.stack([b.numpy() for b in batch if b.shape[0] == steps]).astype("float32")
_, att = model(batch)
by_distance = nu.attention_by_distance(att.numpy())
plt.bar(np.arange(1, len(by_distance) + 1), by_distance)
for bar in (16, 32):
    plt.axvline(bar, color="r", lw=0.8)
plt.xlabel("distance back (steps)")
plt.ylabel("mean attention")
plt.title("Average attention by distance (red: one and two bars)")
plt.show()

# %% [markdown]
# ## 2016 or 2017 layout?
# Train two small models on the same melodies, one with attention around the whole LSTM stack (2016) and one
# around the first layer (2017), and compare what they attend to. (A few hundred steps; seconds in smoke mode.)

# %%
import tempfile

from attnrnn_lib import train
from attnrnn_lib.config import parse_hparams

train_file, _ = corpus.default_dataset(max_files=1)
fig, ax = plt.subplots(figsize=(10, 3))
for preset, colour in (("magenta_2016", "tab:orange"), ("magenta_2017", "tab:blue")):
    hp = parse_hparams(f"preset={preset},batch_size=32,rnn_layer_sizes=[32,32],learning_rate=0.005")
    run = train.Run(tempfile.mkdtemp(), hp)
    train.train(run, [train_file], num_steps=5 if SMOKE else 300, summary_frequency=5 if SMOKE else 100)
    _, att_small = run.model(batch)
    ax.plot(np.arange(1, hp.attn_length + 1), nu.attention_by_distance(att_small.numpy()), color=colour,
            label=preset)
ax.set_xlabel("distance back (steps)")
ax.set_ylabel("mean attention")
ax.legend()
ax.set_title("Attention by distance: attention around the whole stack (2016) vs the first layer (2017)")
plt.show()

# %% [markdown]
# ## A generated melody

# %%
melody = nu.generate(model, [60, -2, 62, -2, 64, -2], num_steps=steps, seed=1)[0]
nu.attention_heatmap(melody.attention, melody.events[:len(melody.attention)], title="A generated melody")
plt.show()

# %% [markdown]
# ## What to try next
# - Import Magenta's own `attention_rnn.mag` (`nu.load_model("attention_rnn.mag")`) and compare its heatmaps.
# - Train a `magenta_2016` model (notebook 03): does attention around the whole stack look different?

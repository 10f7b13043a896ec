# %% [markdown]
# # 00 · Quick start: a melody, and what the model attended to while writing it
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attnrnn/attnrnn/blob/main/notebooks/00_quickstart.ipynb)
#
# **What you will learn:** how to compose a melody with the pre-trained attention RNN that ships with attnrnn,
# how to read its piano roll, how to listen to it, and how to read an *attention heatmap*: for every step of the
# melody, which of the previous 40 steps the model looked at before choosing the next note.

# %%
import os
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab: attnrnn at its pins, but Colab's own TensorFlow (GPU/TPU build) kept
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "git+https://github.com/attnrnn/attnrnn"])
    subprocess.check_call([sys.executable, "-m", "attnrnn_lib.colab"])

import matplotlib.pyplot as plt

from attnrnn_lib import notebook_utils as nu

SMOKE = os.environ.get("ATTNRNN_SMOKE") == "1"  # CI runs every notebook in seconds with this switch
STEPS = 48 if SMOKE else 192

# %% [markdown]
# ## Load the shipped model
# `pretrained/attention_rnn.mag` was trained by attnrnn's own `attention_rnn_train` on folk tunes that ship
# with music21 (see `pretrained/README.md`). A bundle knows its own size and layout, so no flags are needed.

# %%
model = nu.load_model()
print(model.hparams)

# %% [markdown]
# ## Compose
# A *primer* starts the melody. Events are 16th-note steps: a MIDI pitch starts a note, `-2` holds (no event)
# and `-1` ends the note. Here: the opening of *Twinkle Twinkle*, one note every eighth.

# %%
primer = [60, -2, 60, -2, 67, -2, 67, -2, 69, -2, 69, -2, 67, -2, -2, -2]
melody = nu.generate(model, primer, num_steps=STEPS, num_outputs=1, temperature=1.0, seed=0)[0]
nu.piano_roll(melody.events, title="A generated melody", primer_steps=melody.primer_steps)
plt.show()

# %% [markdown]
# ## Listen

# %%
nu.play(melody.events)

# %% [markdown]
# ## See the attention
# Row *t* is the step the model was at; the bright cells in that row are the earlier steps it read from
# (at most 40 back, so everything lives in a band under the diagonal). Vertical stripes are notes the model
# keeps returning to; diagonal lines 16 or 32 steps off the main diagonal are "one bar ago" and "two bars ago".

# %%
nu.attention_heatmap(melody.attention, melody.events[:len(melody.attention)], title="What the model attended to")
plt.show()

# %% [markdown]
# ## What to try next
# - Change `temperature` (0.5: safer, 1.5: wilder) and `seed`, and compare the heatmaps.
# - Notebook 04 looks at attention in depth; notebook 05 has a panel with a keyboard to write your own primer.

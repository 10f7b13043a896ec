# %% [markdown]
# # 05 · Compose with a control panel
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attnrnn/attnrnn/blob/main/notebooks/05_generate_with_widgets.ipynb)
#
# **What you will learn:** how primer, temperature, length, beam search and seed shape what the model writes.
# Type a primer or click the keyboard, press *Generate*, look at the piano roll and heatmap, listen, download.

# %%
import os
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab: attnrnn at its pins, but Colab's own TensorFlow (GPU/TPU build) kept
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "git+https://github.com/attnrnn/attnrnn"])
    subprocess.check_call([sys.executable, "-m", "attnrnn_lib.colab"])
    from google.colab import output

    output.enable_custom_widget_manager()

from IPython.display import display

from attnrnn_lib import notebook_utils as nu

SMOKE = os.environ.get("ATTNRNN_SMOKE") == "1"

# %% [markdown]
# ## Choose a model
# The shipped model by default; or a training run directory, or any `.mag` (ours or Magenta's):
# `nu.load_model("path/to/attention_rnn.mag")`.

# %%
model = nu.load_model()

# %% [markdown]
# ## The panel

# %%
panel, generate_now = nu.generation_panel(model, capture=not SMOKE)
display(panel)
if SMOKE:
    generate_now(None)   # CI presses the button once (results shown in the cell)

# %% [markdown]
# ## What to try next
# - Beam size 4 finds more likely (often more repetitive) melodies than plain sampling.
# - Temperature below 1 makes the model cautious; above 1, adventurous.

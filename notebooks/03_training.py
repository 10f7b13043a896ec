# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
# ---

# %% [markdown]
# # 03 · Training on CPU, GPU or TPU
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attnrnn/attnrnn/blob/main/notebooks/03_training.ipynb)
#
# **What you will learn:** how to train the attention RNN with `attnrnn_lib.train` on whatever accelerator you have,
# watch loss and the attention heatmap in TensorBoard, evaluate, and save a `.mag` bundle.
# On Colab choose *Runtime → Change runtime type → GPU or TPU* first.

# %%
import os
import subprocess
import sys
import tempfile

if "google.colab" in sys.modules:  # Colab: attnrnn at its pins, but Colab's own TensorFlow (GPU/TPU build) kept
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "git+https://github.com/attnrnn/attnrnn"])
    subprocess.check_call([sys.executable, "-m", "attnrnn_lib.colab"])

from attnrnn_lib import notebook_utils as nu  # first: it loads TensorFlow without its start-up notices

import matplotlib.pyplot as plt

from attnrnn_lib import bundle, corpus, train
from attnrnn_lib.config import parse_hparams

SMOKE = os.environ.get("ATTNRNN_SMOKE") == "1"

# %% [markdown]
# ## Device and data
# `get_strategy()` picks a TPU, several GPUs, one GPU or the CPU. The default dataset is built once and cached.

# %%
strategy = train.get_strategy()
print("training on:", strategy.extended.worker_devices)
train_file, eval_file = corpus.default_dataset(max_files=1 if SMOKE else None)

# %% [markdown]
# ## Hyperparameters
# Magenta's syntax works: `batch_size=64,rnn_layer_sizes=[64,64]`. Presets: `magenta_2016` (default),
# `magenta_2017` (Magenta's released layout), `ci` (tiny). On a GPU or TPU the run uses mixed precision
# (`--mixed_precision` on the command line): the output projection over all time steps runs in bfloat16; the
# weights and the recurrence (which folds in the input projections) stay float32.

# %%
hparams = parse_hparams("preset=ci" if SMOKE else "preset=magenta_2017,batch_size=64,rnn_layer_sizes=[64,64]")
steps = 10 if SMOKE else 1000
run_dir = tempfile.mkdtemp(prefix="attnrnn_run_")
on_accelerator = any("GPU" in d or "TPU" in d for d in strategy.extended.worker_devices)
run = train.Run(run_dir, hparams, strategy=strategy, mixed_precision=on_accelerator)
print(hparams, "| mixed precision:", on_accelerator)

# %% [markdown]
# ## TensorBoard (optional)
# Scalars use Magenta's names (`loss`, `metrics/accuracy`, …); the *Images* tab shows the attention heatmap of a
# fixed eval melody at every summary, so you can watch attention form. In Colab: `%load_ext tensorboard` then
# `%tensorboard --logdir {run_dir}`.

# %%
metrics = train.train(run, [train_file], num_steps=steps, summary_frequency=5 if SMOKE else 50,
                      save_checkpoint_steps=steps, heatmap_files=[eval_file])
print(metrics)

# %%
if "google.colab" in sys.modules:   # TensorBoard inside the notebook
    get_ipython().run_line_magic("load_ext", "tensorboard")
    get_ipython().run_line_magic("tensorboard", f"--logdir {run_dir}")

# %% [markdown]
# ## Attention forming
# The heatmap of the same eval melody, at the first and the last summary of this run.

# %%
heatmaps = nu.training_heatmaps(run_dir)
nu.show_pngs([heatmaps[0], heatmaps[-1]], title="")   # each image carries its step
plt.show()

# %% [markdown]
# ## Evaluate
# Magenta evaluates with dropout still on; `dropout=False` gives the model's real eval loss.

# %%
print("eval (dropout off):", train.evaluate(run.model, [eval_file], hparams.batch_size, dropout=False))

# %% [markdown]
# ## Save a bundle and compose with it

# %%
path = os.path.join(run_dir, "my_model.mag")
bundle.save_bundle(run.model, path, description="trained in notebook 03")
melody = nu.generate(nu.load_model(path), [60, -2, 62, -2], num_steps=48 if SMOKE else 128, seed=0)[0]
nu.piano_roll(melody.events, primer_steps=melody.primer_steps)
plt.show()

# %% [markdown]
# ## What to try next
# - The command line does the same: `attention_rnn_train --run_dir=... --hparams=...` and `--eval`.
# - Train the 2016 layout (`preset=magenta_2016`) and compare heatmaps in notebook 04.

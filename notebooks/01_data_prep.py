# %% [markdown]
# # 01 · From tunes to training data
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/attnrnn/attnrnn/blob/main/notebooks/01_data_prep.ipynb)
#
# **What you will learn:** how a tune becomes training data for the attention RNN: NoteSequence → quantised
# 16th-note grid → a monophonic melody of events → the 74 numbers the model reads at each step and the one of
# 40 classes it must predict. And why some tunes give no melody at all.

# %%
import collections
import os
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab: attnrnn at its pins, but Colab's own TensorFlow (GPU/TPU build) kept
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "git+https://github.com/attnrnn/attnrnn"])
    subprocess.check_call([sys.executable, "-m", "attnrnn_lib.colab"])

import matplotlib.pyplot as plt
import numpy as np

from attnrnn_lib import corpus, dataset, encoding, melodies, tfrecord
from attnrnn_lib import notebook_utils as nu
from attnrnn_lib._note_seq import music_pb2

SMOKE = os.environ.get("ATTNRNN_SMOKE") == "1"

# %% [markdown]
# ## The default corpus
# music21 ships Irish and Scottish tune books (O'Neill 1850, Aird, Ryan) as ABC text. attnrnn turns every tune
# into a NoteSequence once and caches the result (all three books: 5–9 minutes on 2 cores; smoke mode: 1 file each).
# On Colab you can use your own MIDI instead: `convert_dir_to_note_sequences --input_dir=... --output_file=...`.

# %%
notes_file, report = corpus.build_corpus(max_files=1 if SMOKE else None)
if "google.colab" in sys.modules and not SMOKE:   # optional: your own MIDI files instead
    from google.colab import files

    from attnrnn_lib import midi_io

    uploaded = files.upload()                      # pick .mid files; cancel to keep the folk tunes
    if uploaded:
        os.makedirs("my_midi", exist_ok=True)
        for name, data in uploaded.items():
            with open(os.path.join("my_midi", name), "wb") as f:
                f.write(data)
        notes_file = "my_midi.tfrecord"
        print(midi_io.convert_directory("my_midi", notes_file, overwrite=True).summary())
records = tfrecord.read_records(notes_file)
print(f"{len(records)} tunes as NoteSequences ({report})")
tunes = (music_pb2.NoteSequence.FromString(r) for r in records)
stats = collections.Counter()
rules = melodies.ExtractionRules()
# The first tune that gives a melody (many are dropped; see the statistics below).
tune, events = next((t, m[0]) for t in tunes if (m := melodies.melodies_from_sequence(t, rules, stats)))
print(tune.sequence_metadata.title or tune.id, f"{len(tune.notes)} notes, {tune.total_time:.1f} s")

# %% [markdown]
# ## Quantise and extract the melody
# Notes snap to a grid of 4 steps per quarter note. A melody is a list of events: a pitch starts a note, `-2`
# (no event) holds it, `-1` ends it. Then it is *squashed*: transposed to C major and folded into [48, 84).

# %%
print(events[:32])
nu.piano_roll(events[:128], title="The first 8 bars as the model sees them")
plt.show()

# %% [markdown]
# ## The 74 inputs and the 40 labels
# Each step becomes 74 numbers: which note sounds (36), playing/silent/attack, melodic direction, "same as one
# bar / two bars ago", a binary step counter, a bar-start flag, and two guesses at the key. The label of a step is
# the next event: one of 36 pitches, no event, note off, or "repeat what happened 1 or 2 bars ago".

# %%
inputs, labels = encoding.encode(events)
fig, ax = plt.subplots(figsize=(12, 4))
ax.imshow(inputs[:96].T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
for y, name in [(0, "pitch 48..83"), (36, "playing/silent/attack/dir"), (40, "repeat 1/2 bars"),
                (42, "step counter"), (49, "bar start"), (50, "key (all)"), (62, "key (last 3)")]:
    ax.axhline(y - 0.5, color="k", lw=0.5)
    ax.text(97, y + 1, name, fontsize=8, va="top")
ax.set_xlabel("step")
ax.set_ylabel("input dimension")
ax.set_title("The model's input for the first 6 bars")
plt.tight_layout()
plt.show()
print("first labels:", labels[:16].tolist())

# %% [markdown]
# ## Why tunes are dropped
# Magenta's rules: a track whose notes start together (chords) is dropped, melodies shorter than 7 bars or with
# fewer than 5 pitch classes are dropped, longer ones are cut at 512 steps. Every drop is counted.

# %%
output_dir = "data_prep_output"
report = dataset.create_dataset(records, output_dir, eval_ratio=0.1, seed=0, overwrite=True)
for line in report.lines():
    print(line)

# %% [markdown]
# ## What to try next
# - Run `convert_dir_to_note_sequences` on your own MIDI folder and compare the drop statistics.
# - Notebook 02 opens the attention cell; notebook 03 trains on these files.

"""What every notebook shares: load a model, play a melody, draw it, and the generation widget panel.

    from attnrnn_lib import notebook_utils as nu
    model = nu.load_model()                      # the shipped pre-trained model
    melody = nu.generate(model, primer=[60, -2, 67, -2], num_steps=128)[0]
    nu.piano_roll(melody.events); nu.attention_heatmap(melody.attention, melody.events); nu.play(melody.events)
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from attnrnn_lib import import_tensorflow_quietly

import_tensorflow_quietly()  # keep TensorFlow's C++ start-up notices out of the notebook
__import__("tensorflow").get_logger().setLevel("ERROR")  # one compile per bucket length is expected, not news
from attnrnn_lib import melody_io  # noqa: E402
from attnrnn_lib.generate import generate  # noqa: E402,F401  (notebooks call nu.generate)
from attnrnn_lib.heatmap import attention_heatmap, event_name  # noqa: E402,F401

SMOKE = os.environ.get("ATTNRNN_SMOKE") == "1"


def load_model(source: str | os.PathLike | None = None):
    """The shipped model (None), a `.mag` bundle (ours or Magenta's), or a training run directory."""
    from attnrnn_lib import bundle, config, train

    source = str(source or bundle.PRETRAINED)
    if os.path.isdir(source):
        run = train.Run(source, config.load_run_hparams(source), write_hparams=False)
        run.restore()
        return run.model
    return bundle.build_model(bundle.read_bundle(source))


def play(events, qpm: float = 120.0, autoplay: bool = False):
    """An audio player for a melody (FluidSynth with pretty_midi's soundfont; a sine synthesiser otherwise)."""
    from IPython.display import Audio

    audio = melody_io.render_audio(
        melody_io.to_pretty_midi(list(events), qpm),
        on_fallback=lambda: print("fluidsynth is not installed: playing a plain sine rendering instead"))
    return Audio(audio, rate=melody_io.SAMPLE_RATE, autoplay=autoplay)


def piano_roll(events, title: str = "Melody", primer_steps: int = 0, ax=None):
    """Draws a melody as a piano roll (pitch against 16th-note step, bar lines every 16 steps)."""
    import matplotlib.pyplot as plt

    events = list(events)
    notes = melody_io.to_notes(events)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(14, 3 + len(events) / 12), 3.2), dpi=100)
    for s, e, p in notes:
        ax.add_patch(plt.Rectangle((s, p - 0.4), e - s, 0.8, color="tab:blue" if s >= primer_steps else "tab:gray"))
    pitches = [p for _, _, p in notes] or [60]
    ax.set_xlim(0, len(events))
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    for bar in range(0, len(events) + 1, 16):
        ax.axvline(bar, color="0.85", lw=0.8, zorder=0)
    ticks = sorted(set(pitches))
    ax.set_yticks(ticks, [event_name(p) for p in ticks], fontsize=7)
    ax.set_xlabel("step (16th notes; lines = bars)")
    ax.set_title(title + (" (grey = primer)" if primer_steps else ""))
    ax.figure.tight_layout()
    return ax.figure


def training_heatmaps(run_dir: str) -> list[tuple[int, bytes]]:
    """The attention heatmaps the trainer wrote to TensorBoard (`run_dir/train`): [(step, PNG bytes)]."""
    import glob

    import tensorflow as tf

    out = []
    for path in sorted(glob.glob(os.path.join(run_dir, "train", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "attention/heatmap":
                    out.append((event.step, tf.make_ndarray(value.tensor)[2]))   # [width, height, png]
    return out


def show_pngs(pngs: list[tuple[int, bytes]], title: str = "step {}"):
    """Shows PNG images side by side, titled by step."""
    import io

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pngs), figsize=(6 * len(pngs), 5), squeeze=False)
    for ax, (step, png) in zip(axes[0], pngs):
        ax.imshow(plt.imread(io.BytesIO(png)))
        ax.set_title(title.format(step))
        ax.axis("off")
    fig.tight_layout()
    return fig


def attention_by_distance(attention) -> np.ndarray:
    """Mean attention per distance back (1 = previous step ... L), over steps whose window is full: [L]."""
    attention = np.asarray(attention)
    length = attention.shape[-1]
    full = attention.reshape(-1, attention.shape[-2], length)[:, length:]    # [batch, T - L, L]
    return full.mean(axis=(0, 1))[::-1] if full.size else np.zeros(length)


def generation_panel(model, capture: bool = True):
    """An ipywidgets panel: model (shipped, a path, an uploaded .mag), primer (text + one-octave keyboard),
    temperature, steps, beam, seed, Generate.

    Shows the piano roll, the attention heatmap and an audio player, and links the MIDI file.
    Returns (panel, run): `run(None)` is what the Generate button does. With `capture=False` results are shown
    in the cell instead of the panel's output area (headless runs, where that area is never drawn).
    """
    import contextlib

    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import FileLink, display

    models = {"shipped model": model}
    choice = w.Dropdown(options=list(models), description="model")
    source = w.Text(placeholder="a .mag file or a run_dir", description="load")
    upload = w.FileUpload(accept=".mag", multiple=False, description="upload .mag")
    primer = w.Text(value="[60, -2, 62, -2, 64, -2, 65, -2]", description="primer")
    keys = [w.Button(description=event_name(p), layout=w.Layout(width="44px")) for p in range(60, 72)]
    clear = w.Button(description="clear", layout=w.Layout(width="60px"))
    temperature = w.FloatSlider(value=1.0, min=0.2, max=2.0, step=0.1, description="temperature")
    steps = w.IntSlider(value=128, min=32, max=512, step=16, description="steps")
    beam = w.IntSlider(value=1, min=1, max=8, description="beam size")
    seed = w.IntText(value=0, description="seed")
    go = w.Button(description="Generate", button_style="success")
    out = w.Output()

    def add_key(button):
        pitch = 60 + keys.index(button)
        current = melody_io.parse_primer_melody(primer.value) if primer.value.strip() not in ("", "[]") else []
        primer.value = str(current + [pitch, -2])

    def add_model(name, loaded):
        models[name] = loaded
        choice.options = list(models)
        choice.value = name

    def load_source(_):
        with out:
            try:
                add_model(os.path.basename(source.value.rstrip("/")), load_model(source.value))
            except Exception as e:
                print(f"error: {e}")

    def load_upload(change):
        for item in upload.value:   # ipywidgets 8: a tuple of dicts with name and content
            path = pathlib.Path(item["name"]).name
            pathlib.Path(path).write_bytes(bytes(item["content"]))
            with out:
                try:
                    add_model(path, load_model(path))
                except Exception as e:
                    print(f"error: {e}")

    source.on_submit(load_source)
    upload.observe(load_upload, names="value")
    for k in keys:
        k.on_click(add_key)
    clear.on_click(lambda _: setattr(primer, "value", "[]"))

    def run(_):
        out.clear_output()
        with out if capture else contextlib.nullcontext():
            try:
                events = melody_io.parse_primer_melody(primer.value) if primer.value.strip() != "[]" else None
                melody = generate(models[choice.value], events, steps.value, 1, temperature.value, beam.value,
                                  beam.value, 1, seed.value)[0]
            except Exception as e:  # a bad primer: say it, keep the panel alive
                print(f"error: {e}")
                return
            piano_roll(melody.events, primer_steps=melody.primer_steps)
            attention_heatmap(melody.attention, melody.events[:len(melody.attention)])
            plt.show()
            display(play(melody.events))
            path = pathlib.Path("generated_panel.mid")
            path.write_bytes(melody_io.midi_bytes(melody_io.to_pretty_midi(melody.events)))
            display(FileLink(str(path)))

    go.on_click(run)
    panel = w.VBox([w.HBox([choice, source, upload]), primer, w.HBox(keys + [clear]), temperature, steps, beam,
                    seed, go, out])
    return panel, run

"""attnrnn: Magenta's Attention RNN melody model rebuilt on TensorFlow 2 / Keras 3.

The data flows through the modules once, left to right:
MIDI -> NoteSequence (`midi_io`, `corpus`) -> Melody (`melodies`) -> arrays (`encoding`)
-> SequenceExample TFRecords (`dataset`, `tfrecord`) -> model -> events -> MIDI.

The data modules never import TensorFlow, so building a dataset starts in a fraction of a second.
"""

__version__ = "0.1.0"

# Magenta attention_rnn constants (SPEC §0): the melody range and the quantisation grid.
MIN_NOTE = 48
MAX_NOTE = 84  # exclusive
STEPS_PER_QUARTER = 4


import os as _os
import sys as _sys


def import_tensorflow_quietly(lean: bool = False) -> None:
    """Imports TensorFlow with C++ start-up chatter (oneDNN/CPU-feature notices, printed before its logging
    is configured, so no setting silences them) sent to /dev/null; Python errors still surface.

    Args:
        lean: for the command-line tools. Keras imports scikit-learn (for its sklearn wrappers) and
          matplotlib.pyplot (for its image gallery) when they are installed, and note-seq pulls both in: about
          0.8 s of a 3 s import, for features no command uses. With `lean`, Keras sees them as missing; both
          import normally afterwards (our heatmaps still use matplotlib). Notebooks keep the full import.
    """
    if "tensorflow" in _sys.modules:
        return
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # and no INFO/WARNING lines from its C++ runtime later
    hidden = [m for m in ("sklearn", "matplotlib.pyplot") if lean and m not in _sys.modules]
    _sys.stderr.flush()
    saved = _os.dup(2)
    devnull = _os.open(_os.devnull, _os.O_WRONLY)
    try:
        _os.dup2(devnull, 2)
        _sys.modules.update(dict.fromkeys(hidden))  # a None entry makes `import x` raise ImportError
        import tensorflow  # noqa: F401
    finally:
        for m in hidden:
            _sys.modules.pop(m, None)
        _os.dup2(saved, 2)
        _os.close(saved), _os.close(devnull)

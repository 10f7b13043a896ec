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

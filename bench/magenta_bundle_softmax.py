"""Runs a Magenta .mag bundle inside Magenta's own TF1 graph and saves its next-step probabilities.

Run with Magenta's Python (`../shared/magenta/setup.sh` makes the venv):
    $MAGENTA_VENV/bin/python bench/magenta_bundle_softmax.py BUNDLE.mag OUT.npz
It encodes a fixed melody with note-seq's KeyMelodyEncoderDecoder(48, 84), feeds it through the bundle's
generate graph (imported from the metagraph, weights restored from the TF1 checkpoint) from the zero state,
and writes the melody, the inputs and the softmax. tests/test_bundle.py checks our import against that file.
"""

import os
import sys
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf
from note_seq import melodies_lib  # noqa: F401
from note_seq.melody_encoder_decoder import KeyMelodyEncoderDecoder
from note_seq.protobuf import generator_pb2

tf.disable_v2_behavior()

# Twinkle Twinkle in 16th-note steps, then a phrase with note-offs, rests and 1- and 2-bar repeats.
TWINKLE = [60, -2, 60, -2, 67, -2, 67, -2, 69, -2, 69, -2, 67, -2, -2, -2,
           65, -2, 65, -2, 64, -2, 64, -2, 62, -2, 62, -2, 60, -2, -2, -1]
MELODY = TWINKLE + TWINKLE[:16] + [72, -1, 71, -2, 69, -1, -2, -2, 67, -2, 65, -2, 64, -1, 62, -2] + TWINKLE[:16]


def main(bundle_path, out_path):
    bundle = generator_pb2.GeneratorBundle.FromString(open(bundle_path, "rb").read())
    encoder = KeyMelodyEncoderDecoder(min_note=48, max_note=84)
    from note_seq import Melody

    melody = Melody(MELODY)
    inputs = np.array([encoder.events_to_input(melody, i) for i in range(len(melody))], np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, meta = os.path.join(tmp, "model.ckpt"), os.path.join(tmp, "model.ckpt.meta")
        open(ckpt, "wb").write(bundle.checkpoint_file[0])
        open(meta, "wb").write(bundle.metagraph_file)
        with tf.Graph().as_default(), tf.Session() as sess:
            saver = tf.train.import_meta_graph(meta)
            saver.restore(sess, ckpt)
            placeholder = tf.get_collection("inputs")[0]
            batch = placeholder.shape[0]
            feed = {placeholder: np.repeat(inputs[None], batch, 0), tf.get_collection("temperature")[0]: 1.0}
            softmax = sess.run(tf.get_collection("softmax")[0], feed)[0]
    np.savez(out_path, melody=np.array(MELODY), inputs=inputs, softmax=softmax)
    print(f"wrote {out_path}: softmax {softmax.shape}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""Training and eval batches from real Nottingham SequenceExamples: bucketed by length, padded only to the edge."""

import numpy as np

from attnrnn_lib import input_pipeline


def test_training_batches_pad_each_batch_to_the_next_16_step_edge(nottingham_examples):
    files = [str(nottingham_examples[0])]
    real = padded = 0
    for inputs, labels, lengths in input_pipeline.training_batches(files, 16, seed=0).take(40):
        steps, lengths = labels.shape[1], lengths.numpy()
        assert inputs.shape == (16, steps, 74) and steps in input_pipeline.TRAIN_BUCKET_LENGTHS
        # The batch's edge is the first one at or above its longest melody: fewer than 16 steps of padding there.
        assert steps - 16 < lengths.max() <= steps
        # Each row's length counts its real steps: its inputs are zeros after it and never before it.
        mask = np.arange(steps)[None] < lengths[:, None]
        assert not inputs.numpy()[~mask].any() and np.abs(inputs.numpy()).sum(-1)[mask].all()
        real, padded = real + lengths.sum(), padded + lengths.size * steps
    # Rows in one batch are within 16 steps of each other, so almost every step trained is a real one.
    assert real / padded > 0.97


def test_eval_batches_cover_every_example_once(nottingham_examples):
    files = [str(nottingham_examples[1])]
    expected = sorted(int(y.shape[0]) for _, y in input_pipeline.load_examples(files))
    seen = []
    for inputs, labels, lengths in input_pipeline.eval_batches(files, 16):
        assert labels.shape[1] in input_pipeline.BUCKET_LENGTHS
        seen += lengths.numpy().tolist()
    assert sorted(seen) == [min(n, 512) for n in expected]

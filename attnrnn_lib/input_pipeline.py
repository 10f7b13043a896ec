"""tf.data input: SequenceExample TFRecords -> length-bucketed, padded batches.

Magenta pads every batch to its longest sequence (often 512 steps for folk tunes of about 200). Here each batch
holds sequences of similar length, padded only to the bucket's edge, so almost every step trained is a real one.
Training buckets are 16 steps wide: the CPU and GPU kernels compile once for every length up to 512, so a fine
bucket costs nothing but its share of the shuffle buffer, and training time is proportional to padded steps.
"""

from __future__ import annotations

import tensorflow as tf

from attnrnn_lib import tfrecord
from attnrnn_lib.dataset import resolve_files  # noqa: F401  (re-exported)
from attnrnn_lib.encoding import INPUT_SIZE
from attnrnn_lib.errors import UsageError

# Padded lengths of training batches: every 16 steps up to Magenta's 512-step cap. On the Nottingham melodies
# 99.2 % of the trained steps are real ones, against 95.8 % with the coarse edges below.
TRAIN_BUCKET_LENGTHS = tuple(range(16, 513, 16))
# Coarse edges: every 32 steps up to 256, then every 64. Evaluation uses them because each bucket ends in a short
# batch that is padded with empty rows to the full batch size; a TPU uses them because it compiles the whole
# training step once per length.
BUCKET_LENGTHS = tuple(range(32, 257, 32)) + (320, 384, 448, 512)


def parse_example(serialized):
    """One SequenceExample -> (inputs [T, 74] int8, labels [T] int32). The inputs are all -1, 0 or 1, so int8
    keeps a cached dataset four times smaller than float32."""
    _, seq = tf.io.parse_single_sequence_example(serialized, sequence_features={
        "inputs": tf.io.FixedLenSequenceFeature([INPUT_SIZE], tf.float32),
        "labels": tf.io.FixedLenSequenceFeature([], tf.int64)})
    return tf.cast(seq["inputs"], tf.int8), tf.cast(seq["labels"], tf.int32)


def _to_batch(inputs, labels):
    # The inputs stay int8 until the model casts each half of a batch: a float32 copy of a 128 x 512 batch is
    # 19 MB, and the prefetched batches would hold three.
    lengths = tf.reduce_sum(tf.cast(labels >= 0, tf.int32), axis=1)                # [batch]
    return inputs, tf.maximum(labels, 0), lengths


def load_examples(files: list[str]) -> tf.data.Dataset:
    """Parsed examples, in file order."""
    return tf.data.TFRecordDataset(files).map(parse_example, num_parallel_calls=tf.data.AUTOTUNE)


def check_files(files: list[str], flag: str = "--sequence_example_file") -> int:
    """Checks that each file is an intact TFRecord of our SequenceExamples; returns how many examples they hold.

    Raises:
      UsageError: naming the file and what is wrong with it, before any training starts.
    """
    total = 0
    for path in files:
        try:
            count, first = tfrecord.scan(path)
        except tfrecord.CorruptRecordError as e:
            raise UsageError(f"{flag}: {e}") from None
        if first is not None:
            try:
                inputs, labels = parse_example(first)
                problem = None if inputs.shape[0] == labels.shape[0] else "inputs and labels differ in length"
            except (tf.errors.OpError, ValueError) as e:
                problem = e.message if isinstance(e, tf.errors.OpError) else str(e)
            if problem:
                raise UsageError(f"{flag}: {path} does not hold attention_rnn SequenceExamples (74 inputs and a "
                                 f"label per step; made by attention_rnn_create_dataset): "
                                 f"{problem.splitlines()[0][:100]}")
        total += count
    return total


def _bucketed(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool,
              lengths: tuple[int, ...]) -> tf.data.Dataset:
    longest, edges = max(lengths), tf.constant(lengths)

    def pad_to_bucket(inputs, labels):
        steps = tf.shape(labels)[1]
        pad = tf.gather(edges, tf.argmax(tf.cast(edges >= steps, tf.int32))) - steps   # up to the bucket's edge
        return (tf.pad(inputs, [[0, 0], [0, pad], [0, 0]]),
                tf.pad(labels, [[0, 0], [0, pad]], constant_values=-1))

    ds = ds.map(lambda x, y: (x[:longest], y[:longest]))
    return ds.bucket_by_sequence_length(
        lambda x, y: tf.shape(y)[0], bucket_boundaries=[b + 1 for b in lengths[:-1]],
        bucket_batch_sizes=[batch_size] * len(lengths), pad_to_bucket_boundary=False,
        padded_shapes=None, padding_values=(tf.constant(0, tf.int8), tf.constant(-1, tf.int32)),
        drop_remainder=drop_remainder).map(pad_to_bucket)


def training_batches(files: list[str], batch_size: int, seed: int,
                     lengths: tuple[int, ...] = TRAIN_BUCKET_LENGTHS) -> tf.data.Dataset:
    """Endless shuffled batches bucketed by length (padded to one of `lengths`): (inputs [B, T, 74] int8,
    labels [B, T] int32, lengths [B])."""
    ds = load_examples(files).cache().repeat().shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    # Bucketing loses the static batch size; the model needs it to split a batch across CPU cores.
    fixed = lambda x, y, n: (tf.ensure_shape(x, [batch_size, None, INPUT_SIZE]),  # noqa: E731
                             tf.ensure_shape(y, [batch_size, None]), tf.ensure_shape(n, [batch_size]))
    return _bucketed(ds, batch_size, drop_remainder=True, lengths=lengths).map(_to_batch).map(fixed).prefetch(2)


def eval_batches(files: list[str], batch_size: int) -> tf.data.Dataset:
    """One ordered pass over every example, bucketed by the coarse `BUCKET_LENGTHS` (the last batch of a bucket
    may be smaller)."""
    return _bucketed(load_examples(files), batch_size, drop_remainder=False,
                     lengths=BUCKET_LENGTHS).map(_to_batch).prefetch(2)

"""NoteSequences -> SequenceExample TFRecords (training and eval), as Magenta's melody_rnn_create_dataset.

Each input NoteSequence goes to the eval or the training split *before* extraction (so all melodies of a
tune stay together, as in Magenta), but the draw is a hash of (seed, index, id): the split is reproducible
and independent of worker scheduling. SequenceExamples are serialised straight from numpy (a fixed byte
layout per step), which is exactly the protobuf wire format TensorFlow reads.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import os
from typing import Iterable

import numpy as np
from attnrnn_lib._note_seq import music_pb2

from attnrnn_lib import encoding, melodies, outputs, tfrecord
from attnrnn_lib.errors import UsageError
from attnrnn_lib.parallel import ordered_map, usable_cores

TRAIN_FILE = "training_melodies.tfrecord"
EVAL_FILE = "eval_melodies.tfrecord"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(tag << 3 | 2) + _varint(len(payload)) + payload


def _feature_list_bytes(per_step_payload: np.ndarray, feature_tag: int) -> bytes:
    """FeatureList of T Features, each ``Feature{<feature_tag>: List{packed values}}``.

    per_step_payload: uint8 [T, k], the packed values of each step (same width k for every step).
    """
    t, k = per_step_payload.shape
    inner = _varint(1 << 3 | 2) + _varint(k)  # List.value, packed
    feature_head = _varint(feature_tag << 3 | 2) + _varint(len(inner) + k)
    entry_head = _varint(1 << 3 | 2) + _varint(len(feature_head) + len(inner) + k)  # FeatureList.feature
    head = np.frombuffer(entry_head + feature_head + inner, np.uint8)
    return np.concatenate([np.broadcast_to(head, (t, head.size)), per_step_payload], axis=1).tobytes()


def sequence_example_bytes(inputs: np.ndarray, labels: np.ndarray) -> bytes:
    """Serialises ``SequenceExample{feature_lists: {"inputs": floats [T, D], "labels": int64 [T]}}``.

    Byte-for-byte a valid tf.train.SequenceExample (checked against TensorFlow's parser in the tests).
    Labels must be in 0..127 (one varint byte each), which holds for every encoder here.
    """
    labels = np.asarray(labels, np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 127):
        raise ValueError("labels must lie in 0..127")
    floats = np.ascontiguousarray(inputs, dtype="<f4")
    in_list = _feature_list_bytes(floats.view(np.uint8).reshape(floats.shape[0], -1), feature_tag=2)
    lab_list = _feature_list_bytes(labels.astype(np.uint8)[:, None], feature_tag=3)
    lists = (_field(1, _field(1, b"inputs") + _field(2, in_list))
             + _field(1, _field(1, b"labels") + _field(2, lab_list)))
    return _field(2, lists)  # SequenceExample.feature_lists


def is_eval(seed: int, index: int, sequence_id: str, eval_ratio: float) -> bool:
    """The reproducible train/eval draw for one input NoteSequence."""
    digest = hashlib.sha256(f"{seed}:{index}:{sequence_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0 ** 64 < eval_ratio


@dataclasses.dataclass
class _Batch:
    first_index: int
    records: list[bytes]
    eval_ratio: float
    seed: int
    rules: melodies.ExtractionRules


_BATCH = 16  # NoteSequences per worker task: enough examples to checksum them together


def _process(batch: _Batch) -> list[tuple[str, bytes, collections.Counter]]:
    """Per NoteSequence of the batch: (split, framed TFRecord bytes of its examples, statistics)."""
    out = []
    for i, record in enumerate(batch.records):
        seq = music_pb2.NoteSequence.FromString(record)
        split = "eval" if is_eval(batch.seed, batch.first_index + i, seq.id, batch.eval_ratio) else "training"
        stats: collections.Counter = collections.Counter()
        examples = [sequence_example_bytes(*encoding.encode(events))
                    for events in melodies.melodies_from_sequence(seq, batch.rules, stats)]
        stats["sequence_examples"] += len(examples)
        out.append((split, examples, stats))
    # One checksum pass over the whole batch's examples, then cut the framed bytes back per sequence.
    flat = [e for _, examples, _ in out for e in examples]
    framed = tfrecord.frame_records(flat)
    result, pos = [], 0
    for split, examples, stats in out:
        size = sum(len(e) + 16 for e in examples)
        result.append((split, framed[pos:pos + size], stats))
        pos += size
    return result


@dataclasses.dataclass
class DatasetReport:
    """What create_dataset did: per split, the input count and every statistic by name."""

    inputs: dict[str, int]
    stats: dict[str, collections.Counter]

    def lines(self) -> list[str]:
        out = [f"{sum(self.inputs.values())} NoteSequences: {self.inputs['training']} training, "
               f"{self.inputs['eval']} eval"]
        for split in ("training", "eval"):
            for name, value in sorted(self.stats[split].items()):
                out.append(f"  {split}_melodies {name}: {value}")
        return out


def read_note_sequences(path: str) -> list[bytes]:
    """Serialized NoteSequences of a TFRecord file, with a UsageError naming the file if it is unusable."""
    if not os.path.isfile(path):
        raise UsageError(f"--input: no such file: {path}")
    try:
        records = tfrecord.read_records(path)
        for r in records[:1]:
            music_pb2.NoteSequence.FromString(r)
    except tfrecord.CorruptRecordError as e:
        raise UsageError(f"--input: {e}") from None
    except Exception as e:  # a record that is not a NoteSequence
        raise UsageError(f"--input: {path}: records are not NoteSequences ({type(e).__name__})") from None
    return records


def create_dataset(records: Iterable[bytes], output_dir: str, eval_ratio: float = 0.1, seed: int = 0,
                   num_workers: int | None = None, overwrite: bool = False,
                   rules: melodies.ExtractionRules = melodies.ExtractionRules()) -> DatasetReport:
    """Writes ``training_melodies.tfrecord`` and ``eval_melodies.tfrecord`` into `output_dir`.

    Both files are written to temporary names and renamed only when everything succeeded.

    Raises:
      UsageError: a bad eval_ratio, an output that exists (without overwrite) or cannot be written.
    """
    if not 0.0 <= eval_ratio <= 1.0:
        raise UsageError(f"--eval_ratio: {eval_ratio} is outside [0, 1]")
    outputs.ensure_dir(output_dir)
    paths = {"training": os.path.join(output_dir, TRAIN_FILE), "eval": os.path.join(output_dir, EVAL_FILE)}
    for p in paths.values():
        if os.path.exists(p) and not overwrite:
            raise UsageError(f"--output_dir: {p} already exists (pass --overwrite to replace it)")
    records = list(records)
    jobs = [_Batch(i, records[i:i + _BATCH], eval_ratio, seed, rules) for i in range(0, len(records), _BATCH)]
    report = DatasetReport({"training": 0, "eval": 0},
                           {"training": collections.Counter(), "eval": collections.Counter()})
    writers = {k: tfrecord.AtomicTFRecordWriter(p, overwrite=True) for k, p in paths.items()}
    try:
        for results in ordered_map(_process, jobs, num_workers or usable_cores(), desc="melodies",
                                   unit=f"x{_BATCH} seq"):
            for split, framed, stats in results:
                report.inputs[split] += 1
                report.stats[split].update(stats)
                writers[split].write_framed(framed)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()
    return report


def resolve_files(pattern: str, flag: str = "--sequence_example_file") -> list[str]:
    """A file or glob -> sorted existing files; a clear UsageError if there are none."""
    files = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise UsageError(f"{flag}: no such file: {pattern}")
    return files

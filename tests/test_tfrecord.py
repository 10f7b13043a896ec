"""TFRecord framing without TensorFlow: TensorFlow itself must read what we write, and we must catch damage."""

import os
import struct

import numpy as np
import pytest

from attnrnn_lib import tfrecord


def test_crc32c_known_vectors():
    # RFC 3720 / iSCSI check value and the empty string.
    assert int(tfrecord.crc32c_many([b"123456789"])[0]) == 0xE3069283
    assert int(tfrecord.crc32c_many([b""])[0]) == 0
    assert int(tfrecord.crc32c_many([bytes(32)])[0]) == 0x8A9136AA


def test_vectorised_crc_equals_bytewise_crc_for_every_length_class():
    rng = np.random.default_rng(0)
    msgs = [rng.bytes(n) for n in (1, 3, 4, 5, 1023, 1024, 1025, 4096, 10_000)]
    fast = tfrecord.crc32c_many(msgs)
    assert [int(c) for c in fast] == [tfrecord._crc32c_small(m) for m in msgs]


def test_tensorflow_reads_our_records(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(1)
    records = [rng.bytes(int(n)) for n in rng.integers(0, 5000, 50)]
    path = tmp_path / "x.tfrecord"
    with tfrecord.AtomicTFRecordWriter(path) as w:
        w.write_all(records)
    back = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]  # TF verifies both checksums
    assert back == records
    assert tfrecord.read_records(path) == records


def test_we_read_tensorflow_records(tmp_path):
    import tensorflow as tf

    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(20):
            w.write(bytes([i]) * (i * 100))
    assert tfrecord.read_records(path) == [bytes([i]) * (i * 100) for i in range(20)]


def test_damage_is_detected(tmp_path):
    path = tmp_path / "x.tfrecord"
    with tfrecord.AtomicTFRecordWriter(path) as w:
        w.write_all([b"a" * 100, b"b" * 100])
    data = bytearray(path.read_bytes())
    data[50] ^= 0x01
    flipped = tmp_path / "flipped.tfrecord"
    flipped.write_bytes(bytes(data))
    with pytest.raises(tfrecord.CorruptRecordError, match="checksum mismatch in record 0"):
        tfrecord.read_records(flipped)
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(tfrecord.CorruptRecordError, match="record 1 is truncated"):
        tfrecord.read_records(truncated)
    text = tmp_path / "text.tfrecord"
    text.write_text("this is not a TFRecord file at all, just words\n" * 3)
    with pytest.raises(tfrecord.CorruptRecordError):
        tfrecord.read_records(text)


def test_writer_leaves_nothing_on_failure_and_never_overwrites(tmp_path):
    path = tmp_path / "out.tfrecord"
    with pytest.raises(RuntimeError):
        with tfrecord.AtomicTFRecordWriter(path) as w:
            w.write(b"partial")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        tfrecord.AtomicTFRecordWriter(path)
    assert path.read_bytes() == b"precious"


def test_length_header_layout(tmp_path):
    path = tmp_path / "x.tfrecord"
    with tfrecord.AtomicTFRecordWriter(path) as w:
        w.write(b"hello")
    data = path.read_bytes()
    assert struct.unpack("<Q", data[:8])[0] == 5 and data[12:17] == b"hello" and len(data) == 21

"""The TensorFlow-free Example/TFRecord writer against TensorFlow's own parser."""

import os

import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.audio import records


def test_encode_example_parses_as_tf_example():
    features = {
        "bytes": b"\x00\xffraw",
        "text": "héllo ☃",
        "int": 7,
        "negative": -5,
        "big": 2**62,
        "float": 0.25,
        "ints": np.array([1, -2, 300000], np.int64),
        "floats": np.array([1.5, -2.25], np.float32),
        "words": ["rock", "pop"],
        "empty_ints": np.zeros([0], np.int64),
    }
    parsed = tf.train.Example.FromString(records.encode_example(features)).features.feature
    assert parsed["bytes"].bytes_list.value == [b"\x00\xffraw"]
    assert parsed["text"].bytes_list.value == ["héllo ☃".encode()]
    assert parsed["int"].int64_list.value == [7]
    assert parsed["negative"].int64_list.value == [-5]
    assert parsed["big"].int64_list.value == [2**62]
    assert parsed["float"].float_list.value == [0.25]
    assert parsed["ints"].int64_list.value == [1, -2, 300000]
    assert parsed["floats"].float_list.value == [1.5, -2.25]
    assert parsed["words"].bytes_list.value == [b"rock", b"pop"]
    assert parsed["empty_ints"].HasField("int64_list")
    assert list(parsed["empty_ints"].int64_list.value) == []
    # The same message as one built with TensorFlow's own classes.
    small = {"a": 3, "b": ["x", "y"], "c": np.array([0.5], np.float32)}
    expected = tf.train.Example(features=tf.train.Features(feature={
        "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
        "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x", b"y"])),
        "c": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5]))}))
    assert tf.train.Example.FromString(records.encode_example(small)) == expected


def test_encode_example_rejects_mixed_lists():
    with pytest.raises(TypeError, match="cannot encode"):
        records.encode_example({"bad": [1, "a"]})


def test_tfrecord_framing_reads_in_tf_data(tmp_path):
    path = str(tmp_path / "x.tfrecord")
    payloads = [b"", b"a", os.urandom(100000)]
    assert records.write_records(path, payloads) == 3
    assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == payloads
    assert list(records.read_records(path)) == payloads


def test_read_records_detects_corruption(tmp_path):
    path = tmp_path / "x.tfrecord"
    records.write_records(str(path), [b"hello world"])
    data = bytearray(path.read_bytes())
    data[14] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(records.CorruptRecordError, match="record 0 data crc mismatch"):
        list(records.read_records(str(path)))
    path.write_bytes(bytes(data[:-3]))
    with pytest.raises(records.CorruptRecordError, match="truncated"):
        list(records.read_records(str(path)))


def test_atomic_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with records.AtomicWriter(str(path)) as f:
            f.write(b"partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_concatenate_joins_parts(tmp_path):
    parts = []
    for i in range(3):
        parts.append(str(tmp_path / f"p{i}"))
        records.write_records(parts[-1], [f"{i}-{j}".encode() for j in range(i + 1)])
    size = records.concatenate(str(tmp_path / "all"), parts)
    assert size == sum(os.path.getsize(p) for p in parts)
    assert list(records.read_records(str(tmp_path / "all"))) == [
        b"0-0", b"1-0", b"1-1", b"2-0", b"2-1", b"2-2"]

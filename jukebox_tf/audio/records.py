"""TFRecord files of `tf.train.Example`, written without importing TensorFlow.

Ingest workers only decode and resample audio; importing TensorFlow in each of them would cost
about half a GiB and several seconds apiece. The two formats involved are small and frozen:

* `tf.train.Example` protobuf wire format (`tensorflow/core/example/{example,feature}.proto`):
  Example{1: Features{1: map<string, Feature>}}, Feature{1: BytesList | 2: FloatList |
  3: Int64List}, each list a repeated field 1 (floats and ints packed).
* TFRecord framing: uint64 length, uint32 masked crc32c(length), data, uint32 masked crc32c(data).

Uncompressed TFRecord files are plain concatenations of records, so per-track part files can be
joined into shards by copying bytes. Tests check both against TensorFlow's own parser.
"""

from __future__ import annotations

import shutil
import struct
from typing import Iterable, Iterator, Mapping, Sequence, Union

import google_crc32c
import numpy as np

from jukebox_tf import storage
from jukebox_tf.storage import AtomicWriter

FeatureValue = Union[bytes, str, int, float, Sequence[bytes], Sequence[str], Sequence[int],
                     Sequence[float], np.ndarray]


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 negatives are sent as 10-byte two's complement varints
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _list_kind(items: list, dtype: np.dtype | None) -> str:
    if dtype is not None and dtype.kind in "fiub":
        return "float" if dtype.kind == "f" else "int"
    if items and all(isinstance(v, (float, np.floating)) for v in items):
        return "float"
    if items and all(isinstance(v, (int, np.integer)) for v in items):
        return "int"
    if all(isinstance(v, (bytes, str)) for v in items):
        return "bytes"
    raise TypeError(f"cannot encode a feature from {items!r:.80}")


def _feature(value: FeatureValue) -> bytes:
    """Encodes one Feature, choosing the list type from the Python/numpy type."""
    if isinstance(value, (bytes, str, int, float, np.integer, np.floating)):
        value = [value]
    items = list(value)
    kind = _list_kind(items, value.dtype if isinstance(value, np.ndarray) else None)
    if kind == "float":
        packed = np.asarray(items, dtype="<f4").tobytes()
        return _field(2, _field(1, packed) if items else b"")
    if kind == "int":
        packed = b"".join(_varint(int(v)) for v in items)
        return _field(3, _field(1, packed) if items else b"")
    body = b"".join(_field(1, v.encode("utf-8") if isinstance(v, str) else v) for v in items)
    return _field(1, body)


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serializes a `tf.train.Example` from {name: value}.

    bytes/str (or lists of them) become BytesList, ints Int64List, floats FloatList; an empty
    list is an empty BytesList unless given as a typed numpy array.
    """
    entries = b"".join(
        _field(1, _field(1, name.encode("utf-8")) + _field(2, _feature(value)))
        for name, value in sorted(features.items()))
    return _field(1, entries)


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord: length, its crc, the data, its crc."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", _masked_crc(length)) + data
            + struct.pack("<I", _masked_crc(data)))


class CorruptRecordError(ValueError):
    pass


def read_records(path: str) -> Iterator[bytes]:
    """Yields the records of an uncompressed TFRecord file, checking both crcs."""
    with storage.open(path, "rb") as f:
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise CorruptRecordError(f"{path}: record {index} has a truncated header")
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
                raise CorruptRecordError(f"{path}: record {index} length crc mismatch")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise CorruptRecordError(f"{path}: record {index} is truncated")
            if struct.unpack("<I", footer)[0] != _masked_crc(data):
                raise CorruptRecordError(f"{path}: record {index} data crc mismatch")
            yield data
            index += 1


def write_records(path: str, records: Iterable[bytes]) -> int:
    """Writes records atomically to `path`; returns how many."""
    count = 0
    with AtomicWriter(path) as f:
        for record in records:
            f.write(frame_record(record))
            count += 1
    return count


def concatenate(path: str, parts: Sequence[str]) -> int:
    """Joins TFRecord part files into one file, atomically; returns its size in bytes."""
    with AtomicWriter(path) as out:
        for part in parts:
            with storage.open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
        size = out.tell()
    return size

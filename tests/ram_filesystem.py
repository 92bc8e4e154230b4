"""TensorFlow's in-memory `ram://` filesystem, made visible to Beam and TFX (tests only).

TensorFlow keeps one `ram://` tree per process, which tf.io.gfile, tf.data, SavedModel and
checkpoints use as they use gs://. Beam and TFX's fileio know only the schemes they ship
plugins for; importing this module registers `ram://` with both, delegating to tf.io.gfile, so
that a pipeline whose every URI is ram:// stands in for one on a bucket, and whatever it
writes with plain local file I/O by mistake lands on the disk where a test can see it.

TF's ram:// finds a folder's entries by name prefix: with `assets/` and `assets.extra/` side
by side, it lists `.extra` in `assets` and calls the checkpoint prefix `ckpt-1` a folder. A
bucket lists `assets/...` only, so tf.io.gfile's listing and folder test are corrected here
for ram:// (and its rmtree, which trips over the phantoms).
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.lib.io import _pywrap_file_io, file_io
from apache_beam.io.filesystem import (CompressedFile, CompressionTypes, FileMetadata,
                                       FileSystem)
from tfx.dsl.io import filesystem_registry
from tfx.dsl.io.plugins.tensorflow_gfile import TensorflowFilesystem

PREFIX = "ram://"


def clear(root: str) -> None:
    """Removes the ram:// tree `root` (the filesystem outlives each test)."""
    if tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)


def files(root: str) -> list[str]:
    """Paths relative to `root` of every file under it, sorted."""
    return sorted(f"{folder}/{name}"[len(root):].lstrip("/")
                  for folder, _, names in tf.io.gfile.walk(root) for name in names)


_listdir, _isdir, _rmtree = (file_io.list_directory_v2, file_io.is_directory_v2,
                             file_io.delete_recursively_v2)


def _real(path, names):
    return [n for n in names if file_io.file_exists_v2(f"{str(path).rstrip('/')}/{n}")]


def _list_directory(path):
    names = _listdir(path)
    return _real(path, names) if str(path).startswith(PREFIX) else names


def _is_directory(path):
    if not _isdir(path) or not str(path).startswith(PREFIX):
        return _isdir(path)
    # Not through _listdir, which asks is_directory first.
    names = [n.decode() if isinstance(n, bytes) else n
             for n in _pywrap_file_io.GetChildren(str(path).encode())]
    return bool(_real(path, names)) or not names  # or an empty folder


def _delete_recursively(path):
    """TF's own rmtree trips over the listing's phantom entries: files, then folders."""
    if not str(path).startswith(PREFIX):
        return _rmtree(path)
    for folder, _, names in reversed(list(tf.io.gfile.walk(path))):
        for name in names:
            tf.io.gfile.remove(f"{folder}/{name}")
        if tf.io.gfile.exists(folder):
            tf.io.gfile.remove(folder)  # a ram:// folder is an entry of its own


# tf.io.gfile's names, and file_io's, which its walk() and TF's own checkpoint code call.
file_io.list_directory_v2 = tf.io.gfile.listdir = _list_directory
file_io.is_directory_v2 = tf.io.gfile.isdir = _is_directory
file_io.delete_recursively_v2 = tf.io.gfile.rmtree = _delete_recursively


class _Writing:
    """A GFile being written, with the tell() that Beam's compressed writer asks for and the
    ram filesystem lacks."""

    def __init__(self, file):
        self._file, self._size = file, 0

    def write(self, data):
        self._file.write(data)
        self._size += len(data)

    def tell(self):
        return self._size

    def __getattr__(self, name):
        return getattr(self._file, name)


class RamFileSystem(FileSystem):
    """Beam's FileSystem for ram:// (Beam finds subclasses by their scheme)."""

    @classmethod
    def scheme(cls):
        return "ram"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        body = path[len(PREFIX):]
        head, _, tail = body.rpartition("/")
        return PREFIX + head, tail

    def mkdirs(self, path):
        tf.io.gfile.makedirs(path)

    def has_dirs(self):
        return True

    def _list(self, dir_or_prefix):
        if not tf.io.gfile.isdir(dir_or_prefix):
            return
        for folder, _, names in tf.io.gfile.walk(dir_or_prefix):
            for name in names:
                yield self.metadata(self.join(folder, name))

    def _open(self, path, mode, compression_type):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        raw = tf.io.gfile.GFile(path, mode)
        raw = _Writing(raw) if "w" in mode else raw
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw
        return CompressedFile(raw, compression_type=compression_type)

    def create(self, path, mime_type="application/octet-stream",
               compression_type=CompressionTypes.AUTO):
        tf.io.gfile.makedirs(self.split(path)[0])
        return self._open(path, "wb", compression_type)

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def copy(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names):
            tf.io.gfile.copy(src, dst, overwrite=True)

    def rename(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names):
            tf.io.gfile.rename(src, dst, overwrite=True)

    def exists(self, path):
        return tf.io.gfile.exists(path)

    def size(self, path):
        return tf.io.gfile.stat(path).length

    def last_updated(self, path):
        return tf.io.gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


class RamTfxFilesystem(TensorflowFilesystem):
    """TFX fileio's tf.io.gfile plugin, for ram:// too."""

    SUPPORTED_SCHEMES = [PREFIX]


filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.register(RamTfxFilesystem, priority=20)

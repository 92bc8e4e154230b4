"""Files on any filesystem TensorFlow knows: local paths, and URIs such as gs://, s3:// (with
tensorflow-io), hdfs:// or ram://.

A local path goes to os, shutil and open() exactly as before this module existed: the same
errors, the same speed, and a process that only touches local files (an ingest worker) never
imports TensorFlow. A URI goes through `tf.io.gfile`, its errors raised as the OSError
subclasses callers already catch (FileNotFoundError, PermissionError, OSError).

Object stores have no atomic rename: `rename` moves a remote folder file by file, its top-level
files last, so a reader that waits for a top-level file (saved_model.pb, dataset.json) finds
the rest in place.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import re
import shutil
import tempfile
import uuid
from typing import IO, Iterator

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(path) -> bool:
    """Whether `path` is a URI (scheme://...) rather than a local path."""
    return bool(_URI.match(os.fspath(path)))


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


@contextlib.contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """tf.errors as the OSError subclasses that the same failure raises on a local path."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.NotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, f"{os.strerror(errno.ENOENT)} ({e.message})",
                                path) from None
    except tf.errors.PermissionDeniedError as e:
        raise PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)} ({e.message})",
                              path) from None
    except tf.errors.OpError as e:
        raise OSError(errno.EIO, e.message, path) from None


def abspath(path: str) -> str:
    """os.path.abspath; a URI is already absolute (abspath would prepend the working folder)."""
    return path if is_remote(path) else os.path.abspath(path)


def realpath(path: str) -> str:
    """os.path.realpath; object stores have no links."""
    return path if is_remote(path) else os.path.realpath(path)


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def lexists(path: str) -> bool:
    """os.path.lexists (a broken link exists); exists() for a URI."""
    return _gfile().exists(path) if is_remote(path) else os.path.lexists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
    if is_remote(path):
        return _gfile().exists(path) and not _gfile().isdir(path)
    return os.path.isfile(path)


def getsize(path: str) -> int:
    if not is_remote(path):
        return os.path.getsize(path)
    with _os_errors(path):
        return _gfile().stat(path).length


def size_and_mtime_ns(path: str) -> tuple[int, int]:
    """(bytes, modification time in ns); a broken local link gives its own."""
    if not is_remote(path):
        stat = os.stat(path) if os.path.exists(path) else os.lstat(path)
        return stat.st_size, stat.st_mtime_ns
    with _os_errors(path):
        stat = _gfile().stat(path)
    return stat.length, stat.mtime_nsec


def listdir(path: str) -> list[str]:
    """Entry names, as os.listdir (gfile marks some remote folders with a trailing '/')."""
    if not is_remote(path):
        return os.listdir(path)
    with _os_errors(path):
        return [name.rstrip("/") for name in _gfile().listdir(path)]


def walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk, top-down: pruning the yielded folder list in place skips those folders."""
    if not is_remote(top):
        yield from os.walk(top)
        return
    if not isdir(top):
        return
    names = listdir(top)
    dirs = [n for n in names if isdir(os.path.join(top, n))]
    files = [n for n in names if n not in set(dirs)]
    yield top, dirs, files
    for name in dirs:
        yield from walk(os.path.join(top, name))


def glob(pattern: str) -> list[str]:
    if not is_remote(pattern):
        import glob as glob_lib

        return glob_lib.glob(pattern)
    with _os_errors(pattern):
        return _gfile().glob(pattern)


def makedirs(path: str) -> None:
    """os.makedirs(path, exist_ok=True)."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
        return
    with _os_errors(path):
        _gfile().makedirs(path)


def open(path: str, mode: str = "r", encoding: str | None = None,
         newline: str | None = None) -> IO:
    """open(); a URI opens a tf.io.gfile.GFile (text is UTF-8)."""
    if not is_remote(path):
        return builtins.open(path, mode, encoding=encoding, newline=newline)
    # GFile reports a missing file only at the first read; open() reports it here.
    if "r" in mode and "+" not in mode and not _gfile().exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return _gfile().GFile(path, mode)


def remove(path: str) -> None:
    if not is_remote(path):
        os.remove(path)
        return
    with _os_errors(path):
        _gfile().remove(path)


def rmtree(path: str, ignore_errors: bool = False) -> None:
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=ignore_errors)
        return
    try:
        with _os_errors(path):
            _gfile().rmtree(path)
    except OSError:
        if not ignore_errors:
            raise


def _files(top: str) -> list[str]:
    """Paths relative to `top` of every file under it, deepest first, then by name."""
    found = [os.path.join(folder, name)[len(top):].lstrip("/")
             for folder, _, names in walk(top) for name in names]
    return sorted(found, key=lambda rel: (-rel.count("/"), rel))


def copytree(src: str, dst: str) -> None:
    """shutil.copytree(src, dst, dirs_exist_ok=True), across filesystems too."""
    if not (is_remote(src) or is_remote(dst)):
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    makedirs(dst)
    for rel in _files(src):
        makedirs(os.path.dirname(os.path.join(dst, rel)))
        with _os_errors(src):
            _gfile().copy(os.path.join(src, rel), os.path.join(dst, rel), overwrite=True)


def rename(src: str, dst: str) -> None:
    """os.replace(src, dst) of a file or folder, within one filesystem. A remote folder moves
    file by file, the top-level files last (see the module docstring)."""
    if not is_remote(src):
        os.replace(src, dst)
        return
    if not isdir(src):
        with _os_errors(src):
            _gfile().rename(src, dst, overwrite=True)
        return
    for rel in _files(src):
        makedirs(os.path.dirname(os.path.join(dst, rel)))
        with _os_errors(src):
            _gfile().rename(os.path.join(src, rel), os.path.join(dst, rel), overwrite=True)
    makedirs(dst)  # an empty folder has no file to carry it
    rmtree(src)


def mkdtemp(prefix: str, dir: str | None = None) -> str:
    """tempfile.mkdtemp(prefix=prefix, dir=dir); in a remote `dir`, a new uniquely named
    folder there."""
    if dir is None or not is_remote(dir):
        return tempfile.mkdtemp(prefix=prefix, dir=dir)
    path = os.path.join(dir, f"{prefix}{uuid.uuid4().hex[:12]}")
    makedirs(path)
    return path


@contextlib.contextmanager
def temporary_directory(prefix: str, dir: str | None = None) -> Iterator[str]:
    """mkdtemp's folder, removed with its contents when the block ends."""
    path = mkdtemp(prefix, dir)
    try:
        yield path
    finally:
        rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path to the file `path`: itself when local, else a temporary copy removed when
    the block ends (for libraries that read real files, such as libsndfile)."""
    if not is_remote(path):
        yield path
        return
    with temporary_directory("jukebox-local-copy-") as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        with _os_errors(path):
            _gfile().copy(path, local)
        yield local


class AtomicWriter:
    """A file that appears under its final name only once it is complete.

    Writes go to `<path>.tmp-<pid>`; leaving the `with` block normally flushes (fsyncs, for a
    local file) and renames it, and leaving by an exception deletes the temp file, so a reader
    (or a rerun) never sees half a file under the final name.
    """

    def __init__(self, path: str, mode: str = "wb"):
        self.path = path
        self.tmp_path = f"{path}.tmp-{os.getpid()}"
        self._mode = mode
        self._file: IO | None = None

    def __enter__(self):
        makedirs(os.path.dirname(abspath(self.path)))
        self._file = open(self.tmp_path, self._mode)
        return self._file

    def __exit__(self, exc_type, exc, tb):
        assert self._file is not None
        if exc_type is None:
            self._file.flush()
            if not is_remote(self.path):  # an object is durable once its upload closes
                os.fsync(self._file.fileno())
            self._file.close()
            rename(self.tmp_path, self.path)
        else:
            self._file.close()
            try:
                remove(self.tmp_path)
            except FileNotFoundError:
                pass
        return False

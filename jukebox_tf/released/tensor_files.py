"""Reads PyTorch checkpoints (torch.save's zip format and its legacy format) and safetensors
files without torch. The structure is read at once, with a lazy TensorRef wherever a tensor was;
a tensor's bytes are read from the file only by its .load(), one tensor at a time.

    tree = load_torch_file("vqvae.pth.tar")      # {'model': OrderedDict(name -> TensorRef), ...}
    w = tree["model"]["encoder.weight"].load()   # np.ndarray [*ref.shape], C-contiguous
    refs = load_safetensors("model.safetensors") # {name: TensorRef}

Unpickling is restricted: only the globals a checkpoint needs resolve (the tensor rebuilders,
OrderedDict, torch.Size, numpy scalars...); any other class (a numpy array's too) becomes an
inert PickledObject, and globals that can only mean running code (os.system, builtins.eval...)
are refused. Pickles are read by Python's pure-Python unpickler (see _Unpickler).
"""

import collections
import io
import json
import math
import os
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

from jukebox_tf.errors import JukeboxError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
# A legacy file starts with the magic number pickled: PROTO, (FRAME,) then LONG1 of 10 bytes.
_MAGIC_OPCODE = b"\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit

_BF16, _F8E4, _F8E5 = (np.dtype(t) for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn,
                                             ml_dtypes.float8_e5m2))
# torch's storage classes (torch.FloatStorage...): the dtype of _rebuild_tensor_v2's tensor.
# UntypedStorage holds bytes; the tensor's dtype then comes as _rebuild_tensor_v3's argument
# (how torch >= 2.1 saves dtypes newer than these classes: uint16, float8...).
_STORAGE_DTYPES = {n + "Storage": np.dtype(t) for n, t in [
    ("Double", "f8"), ("Float", "f4"), ("Half", "f2"), ("BFloat16", _BF16), ("Long", "i8"),
    ("Int", "i4"), ("Short", "i2"), ("Char", "i1"), ("Byte", "u1"), ("Bool", "?"),
    ("ComplexFloat", "c8"), ("ComplexDouble", "c16"), ("Untyped", "u1")]}
# torch.dtype objects pickle as the global torch.<name> (_rebuild_tensor_v3's dtype argument).
_TORCH_DTYPES = {n: np.dtype(n) for n in (
    "float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16",
    "uint32", "uint64", "complex64", "complex128", "bool")}
_TORCH_DTYPES.update(bfloat16=_BF16, float8_e4m3fn=_F8E4, float8_e5m2=_F8E5)
_SAFETENSORS_DTYPES = {n: np.dtype(t) for n, t in [
    ("F64", "f8"), ("F32", "f4"), ("F16", "f2"), ("BF16", _BF16), ("I64", "i8"), ("I32", "i4"),
    ("I16", "i2"), ("I8", "i1"), ("U64", "u8"), ("U32", "u4"), ("U16", "u2"), ("U8", "u1"),
    ("BOOL", "?"), ("F8_E4M3", _F8E4), ("F8_E5M2", _F8E5)]}
# Modules no checkpoint needs a global of: referring to one can only mean running code, so the
# file is refused (other unknown globals are classes of the saving program: inert stubs).
_FORBIDDEN = {"builtins", "__builtin__", "os", "posix", "nt", "subprocess", "sys", "shutil",
              "importlib", "runpy", "socket", "pickle", "_pickle", "marshal", "types", "code",
              "ctypes", "pty", "multiprocessing", "operator", "io", "_io", "pathlib", "asyncio",
              "tempfile", "webbrowser", "signal", "threading", "inspect", "codecs", "_codecs",
              "copyreg", "copy_reg"}

# What the pickle gets for a storage class, a torch.dtype, a storage: immutable (a BUILD on a
# shared numpy dtype such as bfloat16 would change it in the whole process).
_StorageType = collections.namedtuple("_StorageType", "name dtype")
_TorchDtype = collections.namedtuple("_TorchDtype", "name")
_View = collections.namedtuple("_View", "storage start nbytes dtype")  # bytes [start, +nbytes)


class TensorFileError(JukeboxError):
    """The file is not a readable checkpoint: not one, truncated, corrupt or unsupported."""


class PickledObject:
    """An object of a class this reader does not import (a training script's hyperparameter
    class, an nn.Module...): inert, it records what the pickle said. Its class has `module` and
    `name`; `args`, `kwargs`: what the class was called with; `state`: what BUILD set (e.g. its
    __dict__); `dict_items`, `list_items`: what a dict or list subclass held."""
    module = name = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.kwargs, self.state = args, kwargs, None
        self.dict_items, self.list_items = {}, []
        return self

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.dict_items[key] = value

    def __getitem__(self, key):
        return self.dict_items[key]

    def append(self, value):
        self.list_items.append(value)

    def extend(self, values):
        self.list_items.extend(values)

    def __repr__(self):
        return f"PickledObject({self.module}.{self.name})"


class _Storage:
    """A storage's bytes in `path`: `nbytes` at `offset` (None until known: a legacy file's data
    follows all its pickles), in `byteorder` ('little', or 'big' from a zip's byteorder record)."""

    def __init__(self, path, nbytes, offset=None, byteorder="little", dtype=None):
        self.path, self.nbytes, self.offset, self.byteorder = path, nbytes, offset, byteorder
        self.dtype = dtype  # the element size of a legacy file's count of elements


def _dims(values, what):
    """`values` as a tuple of non-negative ints (shapes, strides), else ValueError."""
    if not isinstance(values, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"bad {what} {values!r}")
    return tuple(values)


class TensorRef:
    """A tensor in a file, not read yet: `shape`, `dtype` (numpy's; bfloat16 is
    ml_dtypes.bfloat16), `nbytes`; `load()` reads its bytes, and only those."""

    def __init__(self, storage, dtype, shape, stride, start):
        self.shape, self.dtype = _dims(shape, "shape"), np.dtype(dtype)
        self.stride = _dims(stride, "stride")  # in elements, as torch's
        if len(self.stride) != len(self.shape):
            raise ValueError(f"shape {self.shape} with strides {self.stride}")
        self._storage, self._start = storage, start  # first element: byte `start` of storage

    @property
    def nbytes(self):
        return math.prod(self.shape) * self.dtype.itemsize

    def _span(self):
        """Bytes from the first element to the end of the last (views may skip some)."""
        if 0 in self.shape:
            return 0
        return (sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1) * self.dtype.itemsize

    def load(self):
        """The values: np.ndarray [*shape], C-contiguous, native (little-endian) byte order."""
        n, storage = self._span(), self._storage
        if n == 0:
            return np.zeros(self.shape, self.dtype)
        buf = np.empty(n, np.uint8)
        with open(storage.path, "rb") as f:
            f.seek(storage.offset + self._start)
            if f.readinto(buf) != n:
                raise TensorFileError(f"{storage.path}: truncated: a tensor's data ends past the "
                                      f"end of the file")
        if storage.byteorder == "little" or self.dtype.itemsize == 1:
            flat = buf.view(self.dtype)
        elif self.dtype.kind in "biufc":
            flat = buf.view(self.dtype.newbyteorder(">")).astype(self.dtype)
        else:  # numpy can't byte-swap ml_dtypes' bfloat16: swap it as uint16
            size = self.dtype.itemsize
            flat = buf.view(f">u{size}").astype(f"<u{size}").view(self.dtype)
        strides = [s * self.dtype.itemsize for s in self.stride]
        arr = np.lib.stride_tricks.as_strided(flat, self.shape, strides)
        return arr if arr.flags.c_contiguous else arr.copy(order="C")

    def __repr__(self):
        return f"TensorRef(shape={self.shape}, dtype={self.dtype})"


class _NumpyDtype:
    """numpy.dtype(spec, align, copy) in a pickle, then BUILD (version, byte order, ...): kept as
    its spec and byte order. A real dtype here would be unsafe: BUILD on numpy's one bfloat16
    dtype changes it process-wide, and numpy's C code trusts a dtype's pickled state."""

    def __init__(self, spec, align=False, copy=True):
        self.spec, self.byteorder = spec, "="

    def __setstate__(self, state):
        self.byteorder = state[1] if state[1] in ("<", ">", "=", "|") else "="


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler: its memo is a dict, where the C one's is an array sized by the
    largest index (a 5-byte LONG_BINPUT of 2**31 would make it allocate and zero 16 GB)."""

    def __init__(self, file, loader):
        super().__init__(file, encoding="utf-8")  # torch.load's default, for Python 2 pickles
        self.find_class, self.persistent_load = loader.find_class, loader.persistent_load


class _Loader:
    """One torch file's reading: its safe globals (bound methods, lambdas made per file and
    immutable types, so no BUILD in a pickle reaches another file), its storages by key, and
    (zip format) its records."""

    def __init__(self, path, size):
        self.path, self.size, self.storages, self.stubs, self.refs = path, size, {}, {}, []
        self.members = self.prefix = self.file = None
        self.byteorder, self.main_pickle = "little", False
        self.safe = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            **{("builtins", t.__name__): t for t in (dict, list, tuple, set, frozenset, complex,
                                                    object)},
            ("builtins", "bytes"): self._bytes,
            ("copyreg", "_reconstructor"): self._reconstructor,
            # bytes in a protocol-2 pickle (numpy scalars); str.encode knows text codecs only
            ("_codecs", "encode"): lambda text, encoding="utf-8": text.encode(encoding),
            ("torch._utils", "_rebuild_tensor"): self._rebuild_v2,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self._rebuild_v3,
            # an nn.Parameter, a tensor subclass: read as its plain tensor
            ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
            ("torch._utils", "_rebuild_parameter_with_state"): lambda data, *_: data,
            ("torch._tensor", "_rebuild_from_type_v2"): lambda func, _, args, __: func(*args),
            ("torch", "Size"): tuple,
            ("torch", "device"): lambda *args: ":".join(map(str, args)),  # 'cpu', 'cuda:0'
            # numpy scalars (numpy 1's module path, then numpy 2's); ndarrays stay stubs
            ("numpy", "dtype"): _NumpyDtype,
            ("numpy.core.multiarray", "scalar"): self._numpy_scalar,
            ("numpy._core.multiarray", "scalar"): self._numpy_scalar}

    def fail(self, what):
        raise TensorFileError(f"{self.path}: {what}")

    def unpickle(self, file, main=False):
        self.main_pickle = main
        tree = _Unpickler(file, self).load()
        # A BUILD on a TensorRef could re-point it (e.g. at an object with another file's path)
        if any(vars(ref) != fields for ref, fields in self.refs):
            self.fail("corrupt: the pickle alters a tensor after making it (refused)")
        return tree

    def find_class(self, module, name):
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if (module, name) in self.safe:
            return self.safe[module, name]
        if module.startswith("torch") and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        if module.split(".")[0] in _FORBIDDEN:
            self.fail(f"refers to {module}.{name}, which no checkpoint needs: refused (the file "
                      f"may be malicious)")
        if (module, name) not in self.stubs:
            self.stubs[module, name] = type(name, (PickledObject,), dict(module=module, name=name))
        return self.stubs[module, name]

    def persistent_load(self, pid):
        """A storage: ('storage', storage type, key, location, numel[, legacy view])."""
        kind = pid[0] if isinstance(pid, tuple) and pid and self.main_pickle else None
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "module" and len(pid) > 1:  # a pickled nn.Module's class (legacy)
            return pid[1]
        if kind != "storage" or len(pid) < 5:
            self.fail(f"corrupt: unexpected persistent id {pid!r:.80}")
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType):
            self.fail(f"unsupported storage type {getattr(stype, 'module', '?')}."
                      f"{getattr(stype, 'name', stype)}")
        size = stype.dtype.itemsize
        if key not in self.storages:
            self.storages[key] = self._storage(str(key), _dims([numel], "numel")[0] * size,
                                               stype.dtype)
        storage, view = self.storages[key], (pid[5] if len(pid) > 5 else None)
        if view is not None:  # (view key, offset, numel): a storage view (torch < 0.4)
            start, numel = _dims(view[1:], "storage view")
            if (start + numel) * size > storage.nbytes:
                self.fail(f"corrupt: a view past the end of storage {key!r:.40}")
            return _View(storage, start * size, numel * size, stype.dtype)
        return _View(storage, 0, storage.nbytes, stype.dtype)

    def _storage(self, key, nbytes, dtype):
        if self.members is None:  # legacy: the offset is known once all the pickles are read
            return _Storage(self.path, nbytes, dtype=dtype)
        info = self.members.get(f"{self.prefix}/data/{key}")
        if info is None:
            self.fail(f"corrupt: no data/{key} record for a storage")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size < nbytes:
            self.fail(f"unsupported: data/{key} is compressed or short")
        self.file.seek(info.header_offset)  # the local header's extra field pads to alignment
        header = self.file.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            self.fail(f"corrupt zip: bad local header for data/{key}")
        offset = info.header_offset + 30 + sum(struct.unpack("<HH", header[26:30]))
        return self._in_file(_Storage(self.path, nbytes, offset, self.byteorder))

    def _in_file(self, storage):
        end = storage.offset + storage.nbytes
        if end > self.size:
            self.fail(f"truncated: tensor data ends at byte {end}, past the end of the file "
                      f"({self.size} bytes)")
        return storage

    def _rebuild_v2(self, storage, offset, size, stride, _grad=False, _hooks=None, meta=None):
        """torch._utils._rebuild_tensor(_v2): a typed storage, whose dtype is the tensor's."""
        return self._tensor(storage, offset, size, stride, getattr(storage, "dtype", None), meta)

    def _rebuild_v3(self, storage, offset, size, stride, _grad, _hooks, dtype, meta=None):
        """torch._utils._rebuild_tensor_v3: an UntypedStorage (bytes), and the dtype."""
        if not isinstance(dtype, _TorchDtype):  # e.g. torch.float8_e4m3fnuz: a stub here
            self.fail(f"unsupported tensor dtype {getattr(dtype, 'module', 'torch')}."
                      f"{getattr(dtype, 'name', dtype)!s:.40}")
        return self._tensor(storage, offset, size, stride, _TORCH_DTYPES[dtype.name], meta)

    def _tensor(self, view, storage_offset, shape, stride, dtype, metadata=None):
        if not isinstance(view, _View) or not isinstance(dtype, np.dtype):
            self.fail(f"corrupt: a tensor's storage is a {type(view).__name__}")
        if metadata:  # the conj or neg bit of a lazily conjugated or negated view
            self.fail(f"unsupported: a tensor with metadata {metadata!r:.60}")
        offset = _dims([storage_offset], "storage offset")[0] * dtype.itemsize
        ref = TensorRef(view.storage, dtype, shape, stride, view.start + offset)
        if ref._span() and ref._start + ref._span() > view.start + view.nbytes:
            self.fail(f"corrupt: a tensor of shape {ref.shape} runs past the end of its storage")
        self.refs.append((ref, dict(vars(ref))))
        return ref

    def _bytes(self, *args):
        """builtins.bytes, as protocol 2 pickles b'' (bytes()); not bytes(n): n zero bytes."""
        if args and isinstance(args[0], int):
            raise TypeError("bytes(int) in a pickle")
        return bytes(*args)

    def _numpy_scalar(self, dtype, data):
        """A numpy scalar's pickle, numpy.core.multiarray.scalar(dtype, bytes), for number
        dtypes only: numpy's own function segfaults or zeroes gigabytes on some arguments."""
        spec = dtype.spec if isinstance(dtype, _NumpyDtype) else None
        dtype = np.dtype(spec).newbyteorder(dtype.byteorder) if isinstance(spec, str) else None
        if dtype is None or dtype.kind not in "biufc" or not isinstance(data, bytes) or len(
                data) != dtype.itemsize:
            raise TypeError(f"numpy scalar of dtype {spec!r:.40}")
        return np.frombuffer(data, dtype)[0]

    def _reconstructor(self, cls, base, state):
        """copyreg._reconstructor (pickle protocols 0 and 1), for the classes resolved here."""
        if not (isinstance(cls, type) and (issubclass(cls, PickledObject) or cls is base)):
            raise TypeError(f"copyreg._reconstructor of {cls!r:.60}")
        return cls() if state is None else cls(state)

    def zip_tree(self, f):
        """torch >= 1.6: <archive>/data.pkl, <archive>/data/<key> (stored), <archive>/byteorder."""
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile):
            self.fail("truncated or corrupt: a zip archive without its central directory")
        self.file, self.members = f, {i.filename: i for i in archive.infolist()}
        names = list(self.members)
        self.prefix = names[0].split("/")[0] if names else ""
        if f"{self.prefix}/data.pkl" not in self.members:
            self.fail("a zip archive, but not a torch.save checkpoint (no <archive>/data.pkl)")
        if f"{self.prefix}/byteorder" in self.members:  # absent before torch 1.12: little
            self.byteorder = archive.read(f"{self.prefix}/byteorder").decode("ascii", "replace")
            if self.byteorder not in ("little", "big"):
                self.fail(f"corrupt: byteorder record {self.byteorder!r:.20}")
        return self.unpickle(io.BytesIO(archive.read(f"{self.prefix}/data.pkl")), main=True)

    def legacy_tree(self, f):
        """torch < 1.6 (and _use_new_zipfile_serialization=False): pickles of the magic number,
        the protocol version, sys_info, the object (storages as persistent ids), the storage
        keys; then per storage, in that order, an int64 element count and the raw bytes."""
        if self.unpickle(f) != LEGACY_MAGIC:
            self.fail("corrupt: bad magic number")
        version = self.unpickle(f)
        if version != LEGACY_PROTOCOL:
            self.fail(f"unsupported legacy protocol version {version!r:.20}")
        self.unpickle(f)  # sys_info: storages are little-endian whatever it says (torch
        # converts when writing), and LongStorage is int64 whatever its 'long' size
        tree = self.unpickle(f, main=True)
        keys, pos = self.unpickle(f), f.tell()
        for key in keys:
            storage = self.storages.get(key)
            if storage is None or storage.offset is not None:
                self.fail(f"corrupt: storage key {key!r:.40} unknown or repeated")
            f.seek(pos)
            count = f.read(8)
            if len(count) < 8:
                self.fail(f"truncated: the file ends at byte {self.size}, before storage {key}")
            if struct.unpack("<q", count)[0] * storage.dtype.itemsize != storage.nbytes:
                self.fail(f"corrupt: storage {key} has another size than its tensors say")
            storage.offset = pos + 8
            pos = self._in_file(storage).offset + storage.nbytes
        if any(s.offset is None for s in self.storages.values()):
            self.fail("corrupt: a storage's data is missing")
        return tree


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError as e:
        raise TensorFileError(f"{path}: cannot read it ({e.strerror})") from None


def load_torch_file(path):
    """The object torch.save wrote to `path` (zip or legacy format), with a TensorRef for each
    tensor or nn.Parameter; TensorFileError if it is not one, truncated, corrupt or unsafe."""
    path = os.fspath(path)
    loader = _Loader(path, _file_size(path))
    with open(path, "rb") as f:
        head = f.read(32)
        f.seek(0)
        try:
            if head.startswith(b"PK\x03\x04"):
                return loader.zip_tree(f)
            if head[:1] == b"\x80" and _MAGIC_OPCODE in head:
                return loader.legacy_tree(f)
        except TensorFileError:
            raise
        except Exception as e:  # a corrupt pickle can raise nearly anything (EOFError,
            # UnpicklingError, a whitelisted callable's TypeError, MemoryError...)
            msg = (str(e).splitlines() or [""])[0][:160]
            raise TensorFileError(f"{path}: truncated or corrupt PyTorch checkpoint "
                                  f"({type(e).__name__}: {msg})") from None
    raise TensorFileError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip format "
                          f"nor its legacy format)")


def load_safetensors(path):
    """{name: TensorRef} of a safetensors file (8-byte little-endian header length, a JSON
    header of dtype, shape and data_offsets, then the data); TensorFileError if it is not one,
    truncated or corrupt."""
    path = os.fspath(path)
    size = _file_size(path)
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > min(size - 8, _SAFETENSORS_MAX_HEADER):
            raise TensorFileError(f"{path}: not a safetensors file, or truncated: its header "
                                  f"length runs past the end of the file ({size} bytes)")
        text = f.read(length)
    try:
        header = json.loads(text)
    except ValueError:  # also UnicodeDecodeError
        raise TensorFileError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise TensorFileError(f"{path}: corrupt safetensors header (not a JSON object)")
    refs = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise TensorFileError(f"{path}: tensor {name!r}: unsupported dtype "
                                      f"{entry['dtype']!r:.20}")
            shape = _dims(entry["shape"], "shape")
            begin, end = _dims(entry["data_offsets"], "data_offsets")
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise ValueError("data_offsets disagree with the shape")
        except (TypeError, KeyError, ValueError) as e:
            raise TensorFileError(f"{path}: corrupt safetensors header at tensor {name!r:.80} "
                                  f"({e})") from None
        if 8 + length + end > size:
            raise TensorFileError(f"{path}: truncated: tensor {name!r:.80} ends at byte "
                                  f"{8 + length + end}, past the end of the file ({size} bytes)")
        storage = _Storage(path, end - begin, 8 + length + begin)
        stride = [math.prod(shape[i + 1:]) for i in range(len(shape))]  # C order
        refs[name] = TensorRef(storage, dtype, shape, stride, 0)
    return refs

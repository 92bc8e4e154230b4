"""jukebox_tf.released.tensor_files against torch itself: tests/torch_scripts/save_tensors.py
saves tensors of every dtype and layout with torch.save (legacy and zip formats) and safetensors,
with torch's values; the torch-free reader must give the same bits, read no tensor data before
.load(), and refuse broken or malicious files with a TensorFileError naming the file."""

import collections
import hashlib
import importlib.util
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import zipfile

import ml_dtypes
import numpy as np
import pytest

from jukebox_tf.released.tensor_files import (LEGACY_MAGIC, PickledObject, TensorFileError,
                                              TensorRef, load_safetensors, load_torch_file)
from torch_reference import run_torch

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_scripts",
                      "save_tensors.py")
TORCH_FILES = {"legacy": "checkpoint_legacy.pth.tar", "zip": "checkpoint_zip.pth"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(folder, manifest) of the files torch wrote."""
    out = tmp_path_factory.mktemp("torch_files")
    run_torch(SCRIPT, out)
    with open(out / "manifest.json") as f:
        return out, json.load(f)


def assert_torchs_tensor(ref, out, manifest, name):
    """`ref` reads as torch's tensor `name`: shape, dtype, and every bit."""
    info = manifest["tensors"][name]
    assert isinstance(ref, TensorRef), (name, ref)
    dtype = getattr(ml_dtypes, info["dtype"], None) or info["dtype"]
    assert (ref.shape, ref.dtype) == (tuple(info["shape"]), np.dtype(dtype)), name
    value = ref.load()
    assert isinstance(value, np.ndarray) and value.flags.c_contiguous, name
    assert (value.shape, value.dtype, value.nbytes) == (ref.shape, ref.dtype, ref.nbytes), name
    assert value.dtype.byteorder in "=|" and sys.byteorder == "little", name
    assert value.tobytes() == np.load(out / "expected" / f"{name}.npy").tobytes(), name


@pytest.mark.parametrize("fmt", TORCH_FILES)
def test_torch_files_give_torchs_tensors(saved, fmt):
    out, manifest = saved
    tensors = manifest["tensors"]
    # the layouts torch really saved: views with strides, offsets and shared storages
    assert tensors["transposed"]["stride"] == [1, 5] and tensors["expanded"]["stride"] == [0, 1]
    assert tensors["sliced"]["storage_offset"] == 9 and tensors["shared_b"]["storage_offset"] == 8
    model = load_torch_file(out / TORCH_FILES[fmt])["model"]
    assert isinstance(model, collections.OrderedDict) and list(model) == list(tensors)
    for name, ref in model.items():
        assert_torchs_tensor(ref, out, manifest, name)


def test_big_endian_zip_file_gives_torchs_tensors(saved):
    """A zip file with a 'big' byteorder record (torch.load read it back in the script)."""
    out, manifest = saved
    tree = load_torch_file(out / "checkpoint_big_endian.pth")
    assert len(tree) == 10
    for name, ref in tree.items():
        assert_torchs_tensor(ref, out, manifest, name)


def test_safetensors_gives_torchs_tensors(saved):
    out, manifest = saved
    refs = load_safetensors(out / "model.safetensors")
    assert set(refs) == set(manifest["tensors"])
    for name, ref in refs.items():
        assert_torchs_tensor(ref, out, manifest, name)


@pytest.mark.parametrize("fmt", TORCH_FILES)
def test_entries_besides_tensors(saved, fmt):
    out, manifest = saved
    tree = load_torch_file(out / TORCH_FILES[fmt])
    assert set(tree) == {"model", "step", "hps", "run", "extra"} and tree["step"] == 7
    hps, run = tree["hps"], tree["run"]  # classes of the saving script: inert stubs
    assert isinstance(hps, PickledObject) and (hps.module, hps.name) == ("__main__", "Hyperparams")
    assert json.loads(json.dumps(hps.dict_items)) == manifest["hps"]
    assert hps["downs_t"] == (3, 2, 2) and hps.state is None
    assert isinstance(run, PickledObject) and (run.module, run.name) == ("__main__", "RunInfo")
    assert run.state == manifest["run"] == {"name": "vqvae", "seed": 3}
    extra = tree["extra"]
    assert extra["size"] == (2, 3) and extra["device"] == "cpu" and extra["none"] is None
    assert type(extra["np_float"]) is np.float64 and extra["np_float"] == 0.25
    assert type(extra["np_int"]) is np.int64 and extra["np_int"] == -5
    array = extra["array"]  # an ndarray: numpy's unpickling isn't safe, it stays a stub
    assert isinstance(array, PickledObject) and array.name == "_reconstruct"
    assert array.state[1] == (2, 3) and array.state[4] == np.arange(6, dtype=np.int16).tobytes()
    assert extra["names"] == ["a", "b"] and extra["pair"] == (1, 2.5)
    assert extra["raw"] == b"\x00\xff" and extra["no_bytes"] == b""  # protocol 2: bytes()
    assert extra["tags"] == {"x", "y"}


def rchar():
    """Bytes this process has read from files so far (Linux)."""
    with open("/proc/self/io") as f:
        return int(re.search(r"rchar: (\d+)", f.read()).group(1))


def data_offset(path):
    """Where the big tensor's 64 MB lie in a copy of big_legacy.pth.tar (its end) or
    big_zip.pth (its data/0 record), found without tensor_files."""
    size = 4096 * 4096 * 4
    if path.suffix == ".tar":
        return os.path.getsize(path) - size
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("big_zip/data/0")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    assert info.file_size == size
    return info.header_offset + 30 + sum(struct.unpack("<HH", header[26:30]))


@pytest.mark.parametrize("name", ["big_legacy.pth.tar", "big_zip.pth"])
def test_structure_reads_no_tensor_data(saved, tmp_path, name):
    out, manifest = saved
    path = tmp_path / name
    shutil.copy(out / name, path)
    before = rchar()
    ref = load_torch_file(path)["big"]
    structure_bytes = rchar() - before
    assert (ref.shape, ref.dtype, ref.nbytes) == ((4096, 4096), np.float32, 64 << 20)
    assert structure_bytes < (1 << 20), structure_bytes  # of a 64 MB file
    before = rchar()
    assert hashlib.sha256(ref.load()).hexdigest() == manifest["big_sha256"]
    assert rchar() - before >= 64 << 20
    # the structure holds no copy of the data: garbage written now is what .load() reads
    ref = load_torch_file(path)["big"]
    with open(path, "r+b") as f:
        f.seek(data_offset(path))
        f.write(b"\x00\x00\xc0\x7f" * (4096 * 4096))
    assert np.isnan(ref.load()).all()


def assert_refused(load, path, match=""):
    """`load(path)` raises TensorFileError (no other type), one line naming the file."""
    with pytest.raises(TensorFileError) as error:
        load(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message and re.search(match, message), message
    return message


def test_not_a_tensor_file(tmp_path):
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    text = tmp_path / "pytorch_model.bin"
    text.write_text("version https://git-lfs.github.com/spec/v1\nsize 123\n")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (noise, text, empty):
        assert_refused(load_torch_file, path, "not a PyTorch checkpoint")
        assert_refused(load_safetensors, path, "not a safetensors file")
    assert_refused(load_torch_file, tmp_path / "missing.pth", "cannot read")
    header = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}'  # 8 bytes needed
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    assert_refused(load_safetensors, bad, "corrupt safetensors header")
    bad.write_bytes(struct.pack("<Q", 5) + b"{nope" + bytes(8))
    assert_refused(load_safetensors, bad, "corrupt safetensors header")


@pytest.mark.parametrize("name", [*TORCH_FILES.values(), "model.safetensors"])
def test_truncated_file_fails_when_its_structure_is_read(saved, tmp_path, name):
    out, _ = saved
    data = (out / name).read_bytes()
    load = load_safetensors if name.endswith(".safetensors") else load_torch_file
    for cut in (1, 9, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        path = tmp_path / f"cut{cut}_{name}"
        path.write_bytes(data[:cut])
        message = assert_refused(load, path)
        if cut == len(data) - 1:  # only the last byte lost (of a tensor, or the zip's end)
            assert "truncated" in message, message


def tensor_refs(tree):
    """Every TensorRef in a loaded object tree."""
    if isinstance(tree, TensorRef):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(
        tree, (list, tuple)) else ()
    return [ref for item in items for ref in tensor_refs(item)]


@pytest.mark.parametrize("name", [*TORCH_FILES.values(), "model.safetensors"])
def test_corrupt_bytes_raise_nothing_but_tensor_file_error(saved, tmp_path, name):
    """Bytes flipped anywhere (the pickles, the zip's records, a header): the file reads, or
    fails with TensorFileError, at load time or at .load()."""
    out, _ = saved
    data = (out / name).read_bytes()
    load = load_safetensors if name.endswith(".safetensors") else load_torch_file
    rng, refused = np.random.default_rng(1), 0
    for trial in range(60):
        damaged = bytearray(data)
        for at in rng.integers(0, min(len(data), 3000), size=1 + trial % 3):
            damaged[at] = rng.integers(0, 256)
        path = tmp_path / f"damaged{trial}_{name}"
        path.write_bytes(bytes(damaged))
        try:
            for ref in tensor_refs(load(path)):
                ref.load()
        except TensorFileError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            refused += 1
    assert refused > 0


class Global:
    """Pickles (with RawPickler) as a reference to module.name, importing nothing."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self):  # pickle wants a reduce function callable
        raise AssertionError("only pickled")


class Call:
    """Pickles as func(*args) (a REDUCE)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class Build:
    """Pickles as `obj`, then a BUILD of `state` on it (how pickle restores an object's
    __dict__ or calls its __setstate__)."""

    def __init__(self, obj, state):
        self.obj, self.state = obj, state


def _pristine_pickle():
    """A fresh copy of the pickle module: dill (which apache_beam imports into the same test
    process) rewrites the shared pure-Python pickler's dispatch table."""
    spec = importlib.util.find_spec("pickle")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PICKLE = _pristine_pickle()


class RawPickler(_PICKLE._Pickler):
    """The pure-Python pickler, writing Global as GLOBAL, Build as BUILD and tuples starting
    with 'storage' as persistent ids: the pickles of crafted (malicious or exotic) checkpoints."""
    dispatch = dict(_PICKLE._Pickler.dispatch)

    def save_reference(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def save_build(self, obj):
        self.save(obj.obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    dispatch[Global] = save_reference
    dispatch[Build] = save_build

    def persistent_id(self, obj):
        return obj if isinstance(obj, tuple) and obj[:1] == ("storage",) else None


def raw_pickle(obj):
    with io.BytesIO() as f:
        RawPickler(f, protocol=2).dump(obj)
        return f.getvalue()


def write_legacy(path, obj):
    """A legacy torch.save file of `obj` (or of that pickle, if bytes) with no storages."""
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    main = obj if isinstance(obj, bytes) else raw_pickle(obj)
    path.write_bytes(b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, sys_info))
                     + main + pickle.dumps([], protocol=2))


def write_zip(path, obj, records=()):
    """A zip-format torch.save file of `obj`, with data/<key> records."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", raw_pickle(obj))
        z.writestr("archive/byteorder", "little")
        for key, data in records:
            z.writestr(f"archive/data/{key}", data)


@pytest.mark.parametrize("write", [write_legacy, write_zip], ids=["legacy", "zip"])
@pytest.mark.parametrize("func,arg", [(("os", "system"), "touch {marker}"),
                                      (("posix", "system"), "touch {marker}"),
                                      (("builtins", "exec"), "open({marker!r}, 'w')"),
                                      (("subprocess", "call"), ["touch", "{marker}"])])
def test_forbidden_global_is_refused_not_run(tmp_path, write, func, arg):
    marker = str(tmp_path / "ran")
    arg = [a.format(marker=marker) for a in arg] if isinstance(arg, list) else arg.format(
        marker=marker)
    path = tmp_path / "evil.pth"
    write(path, {"model": collections.OrderedDict(), "hps": Call(Global(*func), arg)})
    assert_refused(load_torch_file, path, re.escape(".".join(func)) + ".*refused")
    assert not os.path.exists(marker)


@pytest.mark.parametrize("write", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_unknown_global_is_an_inert_stub(tmp_path, monkeypatch, write):
    """A global of a module the reader does not know is neither imported nor called."""
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                                 f"def run(*a):\n    open({str(marker)!r}, 'w')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "odd.pth"
    write(path, {"cfg": Call(Global("side_effect_mod", "run"), 1, "x")})
    stub = load_torch_file(path)["cfg"]
    assert isinstance(stub, PickledObject) and (stub.module, stub.name) == ("side_effect_mod",
                                                                            "run")
    assert stub.args == (1, "x")
    assert not marker.exists() and "side_effect_mod" not in sys.modules


def test_unsupported_storage_type(tmp_path):
    storage = ("storage", Global("torch", "QInt8Storage"), "0", "cpu", 4)
    tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"), storage, 0, (4,), (1,), False,
                  collections.OrderedDict())
    path = tmp_path / "quantized.pth"
    write_zip(path, {"w": tensor}, [("0", bytes(4))])
    assert_refused(load_torch_file, path, "unsupported storage type torch.QInt8Storage")
    # the same file with a FloatStorage reads (the crafted file is otherwise right)
    storage = ("storage", Global("torch", "FloatStorage"), "0", "cpu", 1)
    tensor.args = (storage, 0, (), (), False, collections.OrderedDict())
    write_zip(path, {"w": tensor}, [("0", np.float32(1.5).tobytes())])
    assert load_torch_file(path)["w"].load() == np.float32(1.5)


def test_pickle_cannot_repoint_a_tensor(tmp_path):
    """A BUILD on a tensor the pickle made (here: pointing it at another file) is refused."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"0123456789abcdef")
    impostor = Build(Call(Global("collections", "OrderedDict")), {
        "path": str(secret), "offset": 0, "nbytes": 16, "byteorder": "little"})
    storage = ("storage", Global("torch", "ByteStorage"), "0", "cpu", 1)
    tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"), storage, 0, (1,), (1,), False,
                  collections.OrderedDict())
    path = tmp_path / "repointed.pth"
    write_zip(path, {"w": Build(tensor, {"_storage": impostor, "shape": (16,), "stride": (1,)})},
              [("0", b"\x07")])
    assert_refused(load_torch_file, path, "alters a tensor")
    write_zip(path, {"w": tensor}, [("0", b"\x07")])  # without the BUILD, the file reads
    assert load_torch_file(path)["w"].load().tolist() == [7]


@pytest.mark.parametrize("dtype,refused", [
    (Call(Global("numpy", "dtype"), "bfloat16", False, False), False), (Global("torch",
                                                                             "bfloat16"), True)])
def test_pickle_cannot_change_a_numpy_dtype(tmp_path, dtype, refused):
    """numpy's bfloat16 dtype is one object, which a BUILD would change process-wide."""
    path = tmp_path / "dtype.pth"
    write_zip(path, {"d": Build(dtype, (3, ">", None, None, None, 8, 8, 0))})
    if refused:  # torch.bfloat16 is immutable here
        assert_refused(load_torch_file, path, "corrupt")
    else:  # numpy.dtype(...) is an inert record of its arguments
        assert load_torch_file(path)["d"].spec == "bfloat16"
    bf16 = np.dtype(ml_dtypes.bfloat16)
    assert (bf16.itemsize, bf16.byteorder, np.dtype("bfloat16").itemsize) == (2, "=", 2)


def load_in_2_gb(path):
    """load_torch_file(path) in a subprocess with 2 GB of address space: repr(tree), or the
    TensorFileError's message (a crash or a MemoryError fails the test)."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "from jukebox_tf.released.tensor_files import TensorFileError, load_torch_file\n"
            "try:\n    print(repr(load_torch_file(sys.argv[1])))\n"
            "except TensorFileError as e:\n    print(e)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode == 0 and "MemoryError" not in proc.stdout, (proc.returncode,
                                                                       proc.stderr[-2000:])
    return proc.stdout.strip()


def test_huge_memo_index_costs_no_memory(tmp_path):
    """A 5-byte LONG_BINPUT of 2**31 - 1: C's unpickler sizes its memo array by the index (it
    would zero 32 GB); the reader's must not."""
    path = tmp_path / "memo.pth.tar"
    write_legacy(path, b"\x80\x02}r\xff\xff\xff\x7fX\x04\x00\x00\x00stepK\x07s.")
    assert load_in_2_gb(path) == "{'step': 7}"


@pytest.mark.parametrize("spec,data", [("O", None), ("V1000000000", None), ("U9", b"")])
def test_numpy_scalar_pickles_are_checked(tmp_path, spec, data):
    """numpy's own scalar() segfaults on scalar(dtype('O')) and zeroes 1 GB for a 1 GB void
    dtype: the reader takes number dtypes only, with their bytes."""
    def dtype(spec):  # as numpy pickles a dtype: dtype(spec, False, True), BUILD its state
        return Build(Call(Global("numpy", "dtype"), spec, False, True),
                     np.dtype(spec).__reduce__()[2])

    scalar = Global("numpy.core.multiarray", "scalar")
    path = tmp_path / "scalar.pth"
    write_zip(path, {"x": Call(scalar, dtype(spec), *([] if data is None else [data]))})
    assert load_in_2_gb(path).startswith(f"{path}: truncated or corrupt PyTorch checkpoint")
    write_zip(path, {"x": Call(scalar, dtype(">f8"), b"?\xd0" + bytes(6))})
    assert load_torch_file(path)["x"] == 0.25  # a big-endian float64

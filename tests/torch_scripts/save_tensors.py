"""Writes the files tests/test_torch_files.py reads: run in the PyTorch reference venv.

    python save_tensors.py OUT_DIR

OUT_DIR gets a checkpoint dict like OpenAI's ({'model': OrderedDict, 'step', 'hps', ...}) saved
by torch.save in its legacy format (checkpoint_legacy.pth.tar, what torch 1.4 wrote) and in its
zip format (checkpoint_zip.pth), and some of them as a big-endian machine would
(checkpoint_big_endian.pth); the same tensors, made contiguous, in model.safetensors; a
64 MB float32 tensor in both torch formats (big_legacy.pth.tar, big_zip.pth); and torch's values
of every model tensor as expected/<name>.npy (bfloat16, float8 and uint16 as their bit patterns)
with manifest.json (each tensor's dtype, shape and strides, the big tensor's SHA-256, and the
non-tensor entries).
"""

import collections
import hashlib
import json
import os
import sys
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file


class Hyperparams(dict):
    """As OpenAI's jukebox.hparams.Hyperparams: a dict with attribute access (pickled as a dict
    subclass: NEWOBJ, then SETITEMS)."""

    def __getattr__(self, attr):
        return self[attr]

    def __setattr__(self, attr, value):
        self[attr] = value


class RunInfo:
    """A plain object (pickled with NEWOBJ, then BUILD with its __dict__)."""

    def __init__(self, name, seed):
        self.name = name
        self.seed = seed


def model_tensors():
    """The tensors of the checkpoint's 'model' entry: every dtype and layout the reader must
    handle."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 5, generator=g)
    sliced_from = torch.randn(6, 4, generator=g)
    shared = torch.arange(20, dtype=torch.float32) * 0.5
    param = torch.nn.Parameter(torch.randn(4, 2, generator=g))
    param_state = torch.nn.Parameter(torch.randn(3, generator=g))
    param_state.note = "extra state"  # a Parameter with a __dict__: _rebuild_parameter_with_state
    return collections.OrderedDict([
        ("f32", torch.randn(3, 4, generator=g)),
        ("f64", torch.randn(2, 3, generator=g, dtype=torch.float64)),
        ("f16", torch.randn(5, generator=g).half()),
        ("bf16", torch.randn(2, 3, generator=g).bfloat16()),
        ("i64", torch.tensor([-(2 ** 40), -1, 0, 1, 2 ** 62], dtype=torch.int64)),
        ("i32", torch.tensor([[-(2 ** 31), 7], [2 ** 31 - 1, 0]], dtype=torch.int32)),
        ("i16", torch.tensor([-300, 300], dtype=torch.int16)),
        ("i8", torch.tensor([-128, 127, 3], dtype=torch.int8)),
        ("u8", torch.arange(256, dtype=torch.uint8).reshape(16, 16)),
        ("bool", torch.tensor([True, False, True, True])),
        # dtypes torch >= 2.1 saves as an UntypedStorage with _rebuild_tensor_v3:
        ("f8", torch.randn(4, generator=g).to(torch.float8_e4m3fn)),
        ("u16", torch.tensor([1, 2, 60000], dtype=torch.uint16)),
        ("scalar", torch.tensor(3.5)),
        ("empty", torch.zeros(0, 4)),
        ("transposed", base.t()),  # strides (1, 5): a non-contiguous view
        ("transposed_base", base),  # the same storage, contiguous
        ("sliced", sliced_from[2:, 1:3]),  # storage offset 9, strides (4, 1)
        ("expanded", torch.arange(3.0).expand(2, 3)),  # stride 0
        ("shared_a", shared[:8]),  # shared_a and shared_b: one storage, two views
        ("shared_b", shared[8:].view(3, 4)),
        ("param", param),
        ("param_state", param_state),
    ])


def bits(t):
    """torch's values as numpy (bfloat16 and float8 as their bit patterns)."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    if t.dtype == torch.float8_e4m3fn:
        return t.view(torch.uint8).numpy()
    if t.dtype == torch.uint16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def write_big_endian(model, out):
    """checkpoint_big_endian.pth: what torch.save writes on a big-endian machine (a 'big'
    byteorder record, every storage's bytes swapped), made by rewriting a little-endian file;
    torch.load here must read it back as the same values."""
    names = ["f32", "f64", "f16", "bf16", "i64", "i32", "i16", "u8", "bool", "scalar"]
    tensors = collections.OrderedDict((n, model[n].detach().clone()) for n in names)
    src, dst = os.path.join(out, "little.pth"), os.path.join(out, "checkpoint_big_endian.pth")
    torch.save(tensors, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            prefix, _, record = info.filename.partition("/")
            data = zin.read(info)
            if record == "byteorder":
                data = b"big"
            elif record.startswith("data/"):  # one storage per tensor, keyed in pickling order
                t = list(tensors.values())[int(record[5:])]
                if t.dtype == torch.bfloat16:
                    t = t.view(torch.int16)
                data = t.numpy().byteswap().tobytes()
            zout.writestr(f"big_endian/{record}", data)
    os.remove(src)
    loaded = torch.load(dst)
    assert all(torch.equal(loaded[n], tensors[n]) for n in names), "torch disagrees"


def main(out):
    os.makedirs(os.path.join(out, "expected"), exist_ok=True)
    model = model_tensors()
    hps = Hyperparams(sr=44100, downs_t=(3, 2, 2), l_bins=2048, lr=0.0003, fp16=False,
                      restore_vqvae="gs://jukebox-assets/models/5b/vqvae.pth.tar", blocks=None)
    checkpoint = {"model": model, "step": 7, "hps": hps, "run": RunInfo("vqvae", 3),
                  "extra": {"size": torch.Size([2, 3]), "device": torch.device("cpu"),
                            "np_float": np.float64(0.25), "np_int": np.int64(-5),
                            "array": np.arange(6, dtype=np.int16).reshape(2, 3),
                            "names": ["a", "b"], "pair": (1, 2.5), "raw": b"\x00\xff",
                            "no_bytes": b"", "tags": {"x", "y"}, "none": None}}
    torch.save(checkpoint, os.path.join(out, "checkpoint_legacy.pth.tar"),
               _use_new_zipfile_serialization=False)
    torch.save(checkpoint, os.path.join(out, "checkpoint_zip.pth"))
    save_file({k: v.detach().contiguous().clone() for k, v in model.items()},
              os.path.join(out, "model.safetensors"), metadata={"format": "pt"})

    write_big_endian(model, out)

    big = {"big": torch.randn(4096, 4096, generator=torch.Generator().manual_seed(1))}
    torch.save(big, os.path.join(out, "big_legacy.pth.tar"), _use_new_zipfile_serialization=False)
    torch.save(big, os.path.join(out, "big_zip.pth"))

    manifest = {"tensors": {}, "big_sha256": hashlib.sha256(big["big"].numpy()).hexdigest(),
                "hps": dict(hps), "run": vars(checkpoint["run"]), "step": 7}
    for name, t in model.items():
        np.save(os.path.join(out, "expected", f"{name}.npy"), bits(t))
        manifest["tensors"][name] = {"dtype": str(t.dtype).replace("torch.", ""),
                                     "shape": list(t.shape), "stride": list(t.stride()),
                                     "storage_offset": t.storage_offset()}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(torch.__version__)


if __name__ == "__main__":
    main(sys.argv[1])

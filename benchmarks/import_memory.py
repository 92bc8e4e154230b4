"""Peak memory of `jukebox-tf import-weights` against the depth of the checkpoint it converts.

    python benchmarks/import_memory.py --json PATH [--depths 2 4] [--n-ctx 2048]
                                       [--work DIR] [--keep] [--torch-python PY]

For each depth D it writes a Hugging Face checkpoint of the released level-0 upsampler's layout
with random weights (width 1920, 1 head, 128 blocks, cond_width 1024, cond_depth 16, 4111 artist
and 120 genre bins; D transformer layers instead of 72, context --n-ctx instead of 8192) with
the PyTorch reference venv's transformers (tests/torch_scripts/hf_prior.py, save_pretrained:
one pytorch_model.bin), then runs `python -m jukebox_tf import-weights --format hf --model
upsamplers` on it as a subprocess and measures from outside:
  * peak RSS: the child's ru_maxrss from wait4 (exact: the kernel's high-water mark; it
    includes this script's RSS at the fork, a few tens of MB, reported as `parent_rss_mb`), and
    the peak of RSS sampled every 20 ms, per phase: before the run's "converting" line (start,
    TensorFlow, reading the file's structure, building the model skeleton, checking) and after
    it (converting and writing the tensors, merging the checkpoint);
  * wall time of the whole command; the checkpoint's size on disk, and the written run's.
Each layer adds 11.07 M parameters (44 MB in float32); the rest of the model (labels, token and
position embeddings, the upper-level conditioner) is 172 M (688 MB at n_ctx 2048) whatever the
depth. So the checkpoints of depths D and 2D differ by less than 2x in size, and the figure
that tells whether memory follows the file is `rss_mb_per_checkpoint_mb`: the growth in peak
RSS between the shallowest and the deepest run over the growth in file size (about 0 when the
importer holds one tensor at a time, about 1 or more when it holds the model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from bench_common import write_result

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "torch_scripts", "hf_prior.py")
MB = 1 << 20
# The released level-0 upsampler (openai/jukebox hparams.py upsampler_level_0) but for depth
# and context.
LAYOUT = dict(layout="upsampler", level=0, width=1920, heads=1, blocks=128, artist_bins=4111,
              genre_bins=120, cond_width=1024, cond_depth=16, sample=False)


def torch_python() -> str:
    """The reference venv's interpreter, as tests/torch_reference.py finds it."""
    path = os.environ.get("JUKEBOX_TORCH_PYTHON")
    if not path:
        with open(os.path.join(REPO, "tests", "requirements-torch.txt"), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        root = os.environ.get("VENV_ROOT") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jukebox-tf")
        path = os.path.join(root, f"torchref-py311-{digest}", "bin", "python")
    return path


def folder_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files) / MB


def make_checkpoint(python: str, depth: int, n_ctx: int, out: str) -> float:
    """Writes out/model (save_pretrained); returns the seconds it took."""
    spec = dict(LAYOUT, depth=depth, n_ctx=n_ctx)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               TRANSFORMERS_VERBOSITY="error")
    start = time.perf_counter()
    proc = subprocess.run([python, SCRIPT, json.dumps(spec), out], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{SCRIPT} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-4000:]}")
    return time.perf_counter() - start


def convert(model_dir: str, runs_dir: str) -> dict:
    """Runs the importer on model_dir; its wall time, peak RSS and RSS over time."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "jukebox_tf", "import-weights", "--format", "hf", "--model",
           "upsamplers", model_dir, "--out", runs_dir]
    parent_rss = psutil.Process().memory_info().rss / MB
    samples, lines, done = [], [], threading.Event()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    def sample():
        child = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                samples.append((time.perf_counter() - start, child.memory_info().rss / MB))
            except psutil.Error:
                return
            time.sleep(0.02)

    def read():
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip()))

    threads = [threading.Thread(target=sample), threading.Thread(target=read)]
    for t in threads:
        t.start()
    # wait4, not Popen.wait: the child's own high-water mark comes with its status
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in threads:
        t.join()
    if proc.returncode != 0:
        raise SystemExit(f"import-weights failed (exit {proc.returncode}):\n"
                         + "\n".join(text for _, text in lines[-40:]))
    converting = next((t for t, text in lines if text.startswith("converting")), seconds)
    before = [rss for t, rss in samples if t < converting]
    after = [rss for t, rss in samples if t >= converting]
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
            "parent_rss_mb": parent_rss,
            "sampled_peak_rss_mb": {"before_converting": max(before, default=None),
                                    "converting": max(after, default=None)},
            "converting_at_s": converting, "output": [text for _, text in lines],
            "rss_timeline": [(round(t, 2), round(rss, 1)) for t, rss in samples[::10]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--depths", type=int, nargs=2, default=[2, 4], metavar=("D", "D2"),
                        help="the two transformer depths (the released upsampler has 72)")
    parser.add_argument("--n-ctx", type=int, default=2048,
                        help="context length (the released upsampler's is 8192)")
    parser.add_argument("--work", default=None, help="folder for the checkpoints and runs "
                        "(default: a temp folder, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints and runs")
    parser.add_argument("--torch-python", default=None,
                        help="the PyTorch reference interpreter (default: as the tests find it)")
    args = parser.parse_args()

    python = args.torch_python or torch_python()
    if not os.path.exists(python):
        raise SystemExit(f"the PyTorch reference venv is missing ({python}): run `make "
                         f"torchref`, or pass --torch-python")
    work = tempfile.mkdtemp(prefix="jukebox-import-memory-", dir=args.work)
    depths = sorted(args.depths)
    runs = {}
    try:
        for depth in depths:
            out = os.path.join(work, f"depth_{depth}")
            made = make_checkpoint(python, depth, args.n_ctx, out)
            model_dir = os.path.join(out, "model")
            size = folder_mb(model_dir)
            print(f"depth {depth}: checkpoint {size:.0f} MB written in {made:.0f} s; converting",
                  flush=True)
            run = convert(model_dir, os.path.join(out, "runs"))
            run.update(checkpoint_mb=size, run_mb=folder_mb(os.path.join(out, "runs")),
                       make_checkpoint_s=made)
            runs[depth] = run
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    low, high = runs[depths[0]], runs[depths[-1]]
    grown = high["checkpoint_mb"] - low["checkpoint_mb"]
    result = {
        "layout": dict(LAYOUT, n_ctx=args.n_ctx), "depths": depths,
        "peak_rss_mb": {d: r["peak_rss_mb"] for d, r in runs.items()},
        "checkpoint_mb": {d: r["checkpoint_mb"] for d, r in runs.items()},
        "convert_seconds": {d: r["seconds"] for d, r in runs.items()},
        "ratio_peak_rss": high["peak_rss_mb"] / low["peak_rss_mb"],
        "ratio_checkpoint_mb": high["checkpoint_mb"] / low["checkpoint_mb"],
        "rss_mb_per_checkpoint_mb": (high["peak_rss_mb"] - low["peak_rss_mb"]) / grown
        if grown else None,
        "runs": runs, "kept": work if args.keep else None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0],
                    "memory_mb": round(psutil.virtual_memory().total / MB)},
    }
    print(f"\n{'depth':>5} {'file MB':>9} {'peak RSS MB':>12} {'before conv.':>13} "
          f"{'converting':>11} {'seconds':>8}")
    for depth, r in runs.items():
        s = r["sampled_peak_rss_mb"]
        print(f"{depth:5d} {r['checkpoint_mb']:9.0f} {r['peak_rss_mb']:12.0f} "
              f"{s['before_converting'] or 0:13.0f} {s['converting'] or 0:11.0f} "
              f"{r['seconds']:8.1f}")
    print(f"depth {depths[-1]} / depth {depths[0]}: peak RSS {result['ratio_peak_rss']:.2f}x, "
          f"file {result['ratio_checkpoint_mb']:.2f}x; peak RSS grows "
          f"{result['rss_mb_per_checkpoint_mb']:.2f} MB per MB of checkpoint")
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

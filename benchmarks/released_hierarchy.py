"""The released 1b_lyrics hierarchy at its full size, with random weights, through the commands a
user runs.

    python benchmarks/released_hierarchy.py --json PATH [--seconds 0.05] [--depth N] [--small]
        [--torch-python PY] [--work DIR] [--keep]

The PyTorch reference (tests/torch_scripts/hf_hierarchy.py, in the reference venv) writes a
whole transformers JukeboxModel as Hugging Face saves openai/jukebox-1b-lyrics: the released
VQ-VAE, the 1b_lyrics top prior (one transformer over the lyric prefix and the music) and the
two upsamplers, in 2 GB shards, with weights drawn at a scale where outputs are of order one.
Then, each as its own process with the default flags:

  import-weights --format hf --model 1b_lyrics  (the four runs; parameters against the release)
  sample --mode ancestral --lyrics ...          (--seconds; the lyric alignment too)
  sample --mode continue --codes ...            (twice --seconds, the first part kept)
  sample --mode upsample --codes ...            (the top level kept)
  sample --mode primed --prompt ...             (the ancestral sample's audio as the prompt)
  export                                        (the SavedModel of the four runs)
  serve, then generate --seconds over gRPC      (the served model)

Each step's wall seconds and peak RSS (the step's process; for serve the server's, with its
time until the model was available) and the checks of what it wrote: code lengths per level,
finite audio of the expected length, the continued and upsampled codes keeping what they were
given, the alignment's characters. --depth cuts every prior's layers (1b_lyrics keeps at least
16, its first lyric-reading layer is 15) and --small also the widths (the parity tests'
sizes): the CI test runs it that way. The full size needs about 20 GB of memory in its largest
step (the export) and 40 GB of disk while it runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # ahead of this folder: `import serving` is the package
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from bench_common import write_result  # noqa: E402
from import_memory import torch_python  # noqa: E402
from released_models import layout_spec  # noqa: E402
from serving_load import server_process  # noqa: E402

SCRIPT = os.path.join(REPO, "tests", "torch_scripts", "hf_hierarchy.py")
RATE, TOP_HOP = 44100, 128
LYRICS = "la la la, the moths fly over the water"
MB = 2 ** 20


class StepFailed(RuntimeError):
    pass


def run_step(name: str, argv: list[str], log_dir: str, steps: dict) -> dict:
    """Runs one command in a process of its own: wall seconds, peak RSS (wait4's ru_maxrss of
    that process) and its output in log_dir/<name>.log; a failure raises with the log's end."""
    print(f"{name}: {' '.join(os.path.basename(a) if os.sep in a else a for a in argv[2:])}",
          flush=True)
    log = os.path.join(log_dir, f"{name}.log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    step = {"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024,
            "exit": proc.returncode}
    steps[name] = step
    if proc.returncode != 0:
        with open(log) as f:
            raise StepFailed(f"{name} failed (exit {proc.returncode}):\n{f.read()[-3000:]}")
    print(f"{name}: {step['wall_s']:.1f} s, peak RSS {step['peak_rss_mb']:,.0f} MB", flush=True)
    return step


def jukebox(*args) -> list[str]:
    return [sys.executable, "-m", "jukebox_tf", *map(str, args)]


def read_codes(folder: str) -> dict[int, np.ndarray]:
    from jukebox_tf.sampling.outputs import load_codes_npz

    return load_codes_npz(os.path.join(folder, "codes.npz"))[0]


def check_audio(path: str, samples: int) -> dict:
    audio, rate = sf.read(path)
    if rate != RATE or len(audio) != samples or not np.isfinite(audio).all():
        raise StepFailed(f"{path}: {len(audio)} samples at {rate} Hz (finite: "
                         f"{bool(np.isfinite(audio).all())}), expected {samples} at {RATE}")
    return {"samples": len(audio), "rms": float(np.sqrt(np.mean(audio ** 2)))}


def check_codes(folder: str, top_tokens: int) -> dict[int, np.ndarray]:
    """Every level's codes: 4x the level above's tokens, in the codebook; level 0's audio."""
    codes = read_codes(folder)
    expected = {2: top_tokens, 1: 4 * top_tokens, 0: 16 * top_tokens}
    lengths = {level: c.shape[1] for level, c in codes.items()}
    if lengths != expected:
        raise StepFailed(f"{folder}: code lengths {lengths}, expected {expected}")
    if not all(0 <= c.min() and c.max() < 2048 for c in codes.values()):
        raise StepFailed(f"{folder}: codes outside [0, 2048)")
    check_audio(os.path.join(folder, "level_0", "sample_0.wav"), top_tokens * TOP_HOP)
    return codes


def the_runs(runs_dir: str) -> dict[str, str]:
    found = {os.path.basename(p): p for p in glob.glob(os.path.join(runs_dir, "*"))}
    runs = {"vqvae": found.pop("vqvae", None), "up0": found.pop("upsampler_0", None),
            "up1": found.pop("upsampler_1", None)}
    if len(found) != 1 or not all(runs.values()):
        raise StepFailed(f"import-weights wrote {sorted(os.listdir(runs_dir))}")
    runs["top"] = found.popitem()[1]
    return runs


def sample_steps(runs: dict, seconds: float, work: str, steps: dict) -> dict:
    hierarchy = ["--prior", runs["top"], "--upsamplers", runs["up0"], runs["up1"]]
    n = int(seconds * RATE) // TOP_HOP
    out = {mode: os.path.join(work, mode) for mode in
           ("ancestral", "continue", "upsample", "primed")}
    checks = {}
    run_step("sample ancestral", jukebox(
        "sample", *hierarchy, "--mode", "ancestral", "--lyrics", LYRICS, "--seconds", seconds,
        "--seed", 1, "-o", out["ancestral"]), work, steps)
    first = check_codes(out["ancestral"], n)
    with open(os.path.join(out["ancestral"], "alignment.json")) as f:
        alignment = json.load(f)["samples"][0]
    if alignment["characters"] != LYRICS:
        raise StepFailed(f"alignment.json holds {alignment['characters']!r}")
    checks["ancestral"] = {"top_tokens": n,
                           "alignment_shape": list(np.shape(alignment["weights_uint8"]))}

    codes_file = os.path.join(out["ancestral"], "codes.npz")
    run_step("sample continue", jukebox(
        "sample", *hierarchy, "--mode", "continue", "--codes", codes_file, "--seconds",
        2 * seconds, "--seed", 2, "-o", out["continue"]), work, steps)
    continued = check_codes(out["continue"], int(2 * seconds * RATE) // TOP_HOP)
    if not np.array_equal(continued[2][:, :n], first[2]):
        raise StepFailed("continue changed the top-level codes it was given")
    checks["continue"] = {"top_tokens": int(continued[2].shape[1])}

    run_step("sample upsample", jukebox(
        "sample", *hierarchy, "--mode", "upsample", "--codes", codes_file, "--seed", 3, "-o",
        out["upsample"]), work, steps)
    upsampled = check_codes(out["upsample"], n)
    if not np.array_equal(upsampled[2], first[2]):
        raise StepFailed("upsample changed the top-level codes it was given")
    checks["upsample"] = {"top_tokens": n}

    prompt = os.path.join(out["ancestral"], "level_0", "sample_0.wav")
    run_step("sample primed", jukebox(
        "sample", *hierarchy, "--mode", "primed", "--prompt", prompt, "--seconds",
        2 * seconds, "--seed", 4, "-o", out["primed"]), work, steps)
    primed = check_codes(out["primed"], int(2 * seconds * RATE) // TOP_HOP)
    checks["primed"] = {"top_tokens": int(primed[2].shape[1])}
    return checks


def serve_and_generate(runs: dict, seconds: float, work: str, steps: dict) -> dict:
    from serving.toy_model import write_model_config

    base = os.path.join(work, "models", "jukebox")
    run_step("export", jukebox("export", "--prior", runs["top"], "--upsamplers", runs["up0"],
                               runs["up1"], "--out", base), work, steps)
    config = write_model_config(os.path.join(work, "models.config"), "jukebox", base)
    clip = os.path.join(work, "served.wav")
    print("serve: loading the exported model", flush=True)
    start = time.perf_counter()
    with server_process(config, "jukebox", timeout=3600) as (target, server):
        steps["serve"] = {"until_available_s": time.perf_counter() - start}
        try:
            run_step("generate", jukebox(
                "generate", "--server", target, "--model", "jukebox", "--lyrics", LYRICS,
                "--seconds", seconds, "--seed", 5, "-o", clip, "--timeout", 3600), work, steps)
        finally:
            if server.poll() is None:
                with open(f"/proc/{server.pid}/status") as f:
                    steps["serve"]["peak_rss_mb"] = int(
                        re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
            else:  # killed (the kernel's OOM killer says -9): what generate's error means
                steps["serve"]["exit_code"] = server.returncode
    steps["serve"]["wall_s"] = time.perf_counter() - start
    return {"generate": check_audio(clip, round(seconds * RATE))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--seconds", type=float, default=0.05,
                        help="audio per sample (continue and primed: twice it)")
    parser.add_argument("--depth", type=int, default=None,
                        help="layers of every prior (default: the released 72)")
    parser.add_argument("--small", action="store_true",
                        help="the parity tests' widths (with --depth: for tests on a CPU)")
    parser.add_argument("--torch-python", default=None,
                        help="the PyTorch reference interpreter (default: as the tests find it)")
    parser.add_argument("--work", default=None, help="folder for the checkpoint, runs and "
                        "outputs (default: a temp folder, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if int(args.seconds * RATE) // TOP_HOP < 1:
        raise SystemExit(f"--seconds {args.seconds}: shorter than one top-level token")
    python = args.torch_python or torch_python()
    if not os.path.exists(python):
        raise SystemExit(f"the PyTorch reference venv is missing ({python}): run `make "
                         f"torchref` or pass --torch-python")
    specs = [layout_spec(name, args.depth, None, args.small)
             for name in ("1b_lyrics", "upsampler_1", "upsampler_0")]
    work = tempfile.mkdtemp(prefix="jukebox-hierarchy-", dir=args.work)
    steps = {}
    result = {"seconds": args.seconds, "depth": args.depth, "small": args.small,
              "specs": specs, "steps": steps, "work": work if args.keep else None}
    checkpoint = os.path.join(work, "checkpoint")
    try:
        os.makedirs(checkpoint)
        run_step("reference writes the checkpoint", [
            python, SCRIPT, json.dumps({"priors": specs}), checkpoint], work, steps)
        with open(os.path.join(checkpoint, "reference.json")) as f:
            result["reference"] = json.load(f)
        result["checkpoint_mb"] = sum(os.path.getsize(p) for p in glob.glob(
            os.path.join(checkpoint, "*"))) / MB
        runs_dir = os.path.join(work, "runs")
        step = run_step("import-weights", jukebox(
            "import-weights", "--format", "hf", "--model", "1b_lyrics", checkpoint, "--out",
            runs_dir), work, steps)
        with open(os.path.join(work, "import-weights.log")) as f:
            step["written"] = re.findall(r"wrote .*", f.read())
        if not args.keep:  # the export needs the disk
            shutil.rmtree(checkpoint)
        runs = the_runs(runs_dir)
        result["checks"] = sample_steps(runs, args.seconds, work, steps)
        result["checks"].update(serve_and_generate(runs, args.seconds, work, steps))
        result["ok"] = True
    except StepFailed as e:
        result.update(ok=False, error=str(e))
        print(e, file=sys.stderr)
    finally:
        write_result(args.json, result, announce=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'step':<34} {'wall s':>8} {'peak RSS MB':>12}")
    for name, step in steps.items():
        print(f"{name:<34} {step.get('wall_s', float('nan')):>8.1f} "
              f"{step.get('peak_rss_mb', float('nan')):>12,.0f}")
    return write_result(args.json, result) if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

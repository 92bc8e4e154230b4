"""Generation as users run it: the whole hierarchy through `jukebox-tf sample` with its default
flags, and through the exported SavedModel behind `jukebox-tf serve`.

    python benchmarks/generate.py --json PATH [--quick] [--preset small|tiny] [--keep DIR]

Untrained runs of --preset at 22,050 Hz (bench_common.build_and_export: the CLI's own
commands with 0 training steps; the time per token does not depend on the weights), exported.
For each length N (10 and 30 seconds; 5 with --quick) and 1 and 4 samples:

(a) cli: `python -m jukebox_tf sample --prior ... --upsamplers ... --seconds N --samples B`,
    a process of its own, as a user types it. Its wall time is split with the timing record
    the command writes (codes.npz, settings["timing (s)"]): `startup_s` (process start,
    imports and checks, and writing the outputs: the wall time less what the record holds),
    `load_s`, each level's windows, `alignment_s` (the lyric alignment), `decode_s`. The
    first window of a level includes tracing its graph: `first_call_s` is the sum over levels
    of the first window's excess over the median of that level's later windows (taken from
    the run of the same batch with the most windows; a level with one window in every run
    counts none). The runs share a fresh XLA compilation cache (xla_cache.py): the first run
    of each batch size compiles (`first_call_cold_s`, from the 1-sample run at the shortest
    N), the later ones load what it stored, as a user's second command does.
    `--stream` (one sample, the longest N) gives the time from the command's start to the
    first second of level-0 audio on disk: `first_sound_s`.
(b) served: `python -m serving` on the export; with serving.client, the chain `jukebox-tf
    generate` sends (sample the top level, upsample each level below, decode; B rows each)
    through the XLA twins it uses by default (`sample_xla`, `upsample_xla`), and
    `generate_xla` (one call of B rows). The first chain of each batch size compiles: it is
    run before the timed ones and reported apart (`served_first_call_s`, one sample: its
    excess over the timed run of the same length). The plain signatures (what stock TF
    Serving runs unless started with XLA enabled) are timed at the shortest N:
    `served_plain_realtime_factor_B`, `served_plain_generate_realtime_factor_B`.
    Then `jukebox-tf generate` itself, a process of its own (one sample, the longest N), without
    and with `--stream` (the levels below the top window by window through `upsample_part_xla`,
    the audio decoded as it comes; its signature's first call made before, as the others'):
    `served_cli_wall_s`, `served_stream_wall_s`, and the time from that command's start to
    the first second of audio on disk, `served_first_sound_s`.

Real-time factors are audio seconds per wall second, per sample count at the longest N:
`cli_realtime_factor_B` = N / (sampling + decode - first_call_s), the same with the whole wall
time (`cli_whole_realtime_factor_B`), `served_realtime_factor_B` = N / the chain's seconds and
`served_generate_realtime_factor_B` = N / the generate_xla call's. Targets (issue 20): at least
1.0 with one sample and 2.0 with four (aggregate: B x N / seconds), both paths.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # ahead of this folder: `import serving` is the package
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from bench_common import build_and_export, write_result  # noqa: E402
from serving_load import server_process  # noqa: E402

from jukebox_tf import xla_cache  # noqa: E402
from jukebox_tf.cli.generate import read_metadata  # noqa: E402

from serving import client  # noqa: E402
from serving.toy_model import write_model_config  # noqa: E402

RATE = 22050
MODEL = "jukebox"
LYRICS = "la la la, the moths fly over the water"
WARM_SECONDS = 1.0  # the untimed calls that compile and optimise each signature's graphs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--quick", action="store_true", help="5 seconds only")
    p.add_argument("--preset", choices=("small", "tiny"), default="small")
    p.add_argument("--keep", metavar="DIR", help="build and keep the models in DIR")
    return p.parse_args(argv)


# -- (a) the CLI -----------------------------------------------------------------------------

def command(*argv: str):
    """`jukebox-tf ARGV...` as a process of its own: (the finished process, its wall time)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jukebox_tf", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"jukebox-tf {argv[0]} failed:\n{proc.stderr[-3000:]}")
    return proc, wall


def cli_run(runs: dict, seconds: float, samples: int, out: str, *flags: str) -> dict:
    """One `jukebox-tf sample` process: its wall time and its own timing record."""
    from jukebox_tf.sampling.outputs import load_codes_npz

    proc, wall = command("sample", "--prior", runs["prior_l2"], "--upsamplers",
                         runs["prior_l1"], runs["prior_l0"], "--lyrics", LYRICS, "--seconds",
                         str(seconds), "--samples", str(samples), "-o", out, "--quiet", *flags)
    timing = load_codes_npz(os.path.join(out, "codes.npz"))[1]["settings"]["timing (s)"]
    windows = {int(level): ts for level, ts in timing["windows"].items()}
    sampled = sum(sum(ts) for ts in windows.values())
    return {"seconds": seconds, "samples": samples, "wall_s": wall, "load_s": timing["load"],
            "decode_s": timing["decode"], "alignment_s": timing["alignment"],
            "windows_s": windows, "level_s": {level: sum(ts) for level, ts in windows.items()},
            "startup_s": wall - timing["load"] - sampled - timing["alignment"]
            - timing["decode"] - timing.get("stream", 0.0),
            "stream_s": timing.get("stream"), "first_second_s": timing.get("first_second")}


def first_call_excess(runs: list[dict], cold: bool = False) -> float:
    """Sum over levels of (first window - median of the later ones), from the run with the
    most windows of that level, or with `cold` of the first run (its median from the run
    with the most windows)."""
    total = 0.0
    for level in runs[0]["windows_s"]:
        longest = max((r["windows_s"][level] for r in runs), key=len)
        first = runs[0]["windows_s"][level][0] if cold else longest[0]
        if len(longest) > 1:
            total += max(0.0, first - statistics.median(longest[1:]))
    return total


# -- (b) the served model --------------------------------------------------------------------

def rows(value, n: int, dtype) -> np.ndarray:
    return np.full([n], value, dtype)


def served_chain(target: str, meta: dict, seconds: float, samples: int,
                 suffix: str = "_xla") -> dict:
    """The steps `jukebox-tf generate` sends, with `samples` rows each: seconds per step.
    suffix: "_xla" for the XLA twins of sample and upsample, "" for the plain ones."""
    hops = list(meta["hop_lengths"])
    levels = sorted(meta.get("generated_levels") or meta["prior_levels"])
    top = levels[-1]
    strings = np.array([b""] * samples, dtype=object)
    cond = {"artist": strings, "genres": strings,
            "total_seconds": rows(0.0, samples, np.float32),
            "offset_seconds": rows(0.0, samples, np.float32)}
    settings = {"temperature": rows(1.0, samples, np.float32),
                "top_k": rows(0, samples, np.int32), "top_p": rows(0.0, samples, np.float32),
                "seed": np.arange(samples, dtype=np.int64)}
    steps = {}

    def step(name, signature, inputs):
        start = time.perf_counter()
        out = client.predict(target, MODEL, inputs, signature=signature, timeout=3600)
        steps[name] = time.perf_counter() - start
        return out

    n_tokens = int(np.ceil(seconds * RATE / hops[top]))
    codes = step(f"sample level {top}", "sample" + suffix, {
        **cond, "lyrics": np.array([LYRICS.encode()] * samples, dtype=object),
        "n_tokens": rows(n_tokens, samples, np.int32), **settings,
        "prime": np.zeros([samples, 0], np.int32)})["codes"]
    for level in reversed(levels[:-1]):
        codes = step(f"upsample level {level}", "upsample" + suffix, {
            "codes": codes, "level": rows(level, samples, np.int32), **cond,
            **settings})["codes"]
    step(f"decode level {levels[0]}", "decode",
         {"codes": codes, "level": rows(levels[0], samples, np.int32)})
    return {"seconds": seconds, "samples": samples, "steps_s": steps,
            "total_s": sum(steps.values())}


def served_generate(target: str, seconds: float, samples: int,
                    signature: str = "generate_xla") -> float:
    strings = np.array([b""] * samples, dtype=object)
    start = time.perf_counter()
    client.predict(target, MODEL, {
        "artist": strings, "genres": strings,
        "lyrics": np.array([LYRICS.encode()] * samples, dtype=object),
        "seconds": rows(seconds, samples, np.float32),
        "total_seconds": rows(0.0, samples, np.float32),
        "temperature": rows(1.0, samples, np.float32), "top_k": rows(0, samples, np.int32),
        "top_p": rows(0.0, samples, np.float32),
        "seed": np.arange(samples, dtype=np.int64)}, signature=signature, timeout=3600)
    return time.perf_counter() - start


def generate_command(target: str, seconds: float, out: str, *flags: str) -> dict:
    """One `jukebox-tf generate` process against the server: its wall time and, with
    --stream, the seconds from its start to its first second of audio (as it reports it)."""
    import re

    proc, wall = command("generate", "--server", target, "--model", MODEL, "--lyrics", LYRICS,
                         "--seconds", str(seconds), "-o", out, *flags)
    found = re.search(r"the first second of level-\d+ audio after ([0-9.]+) s", proc.stderr)
    return {"wall_s": wall, "first_second_s": float(found.group(1)) if found else None}


# -- main --------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    lengths = (5.0,) if args.quick else (10.0, 30.0)
    batches = (1, 4)
    root = args.keep or tempfile.mkdtemp(prefix="jukebox-generate-")
    print(f"building untrained {args.preset} runs and exporting them in {root}", flush=True)
    runs = build_and_export(root, args.preset, RATE, max_seconds=max(lengths))
    cache = os.path.join(root, "xla-cache")
    shutil.rmtree(cache, ignore_errors=True)
    os.environ[xla_cache.ENV] = cache  # the commands' and the server's, fresh for this run
    # The in-process build pointed TF_XLA_FLAGS at the default cache: the children pick theirs.
    os.environ["TF_XLA_FLAGS"] = " ".join(f for f in os.environ.get("TF_XLA_FLAGS", "").split()
                                          if not f.startswith(xla_cache.FLAG))

    cli = {b: [] for b in batches}
    for samples in batches:
        for seconds in lengths:
            r = cli_run(runs, seconds, samples, os.path.join(root, f"cli_{seconds}_{samples}"))
            cli[samples].append(r)
            print(f"cli {seconds:g} s x {samples}: wall {r['wall_s']:.1f} s (startup "
                  f"{r['startup_s']:.1f}, load {r['load_s']:.1f}, "
                  + ", ".join(f"level {lv} {s:.1f}" for lv, s in r["level_s"].items())
                  + f", decode {r['decode_s']:.1f})", flush=True)

    # Time to the first sound: --stream, one sample, the longest N (the cache is warm now).
    streamed = cli_run(runs, lengths[-1], 1, os.path.join(root, "cli_stream"), "--stream")
    print(f"cli --stream {lengths[-1]:g} s: the first second of audio after "
          f"{streamed['first_second_s']:.1f} s, wall {streamed['wall_s']:.1f} s", flush=True)

    served = {b: [] for b in batches}
    generate = {b: {} for b in batches}
    plain = {}
    config = write_model_config(os.path.join(root, "models.config"), MODEL, runs["base"])
    start = time.perf_counter()
    with server_process(config, MODEL, timeout=1800) as (target, _):
        server_start = time.perf_counter() - start
        meta = read_metadata(target, MODEL, timeout=600)
        first = served_chain(target, meta, lengths[0], 1)
        for samples in batches:  # XLA compiles per batch size, whatever the length
            if samples != 1:
                served_chain(target, meta, WARM_SECONDS, samples)
            served_generate(target, WARM_SECONDS, samples)
            served_chain(target, meta, WARM_SECONDS, samples, suffix="")
            served_generate(target, WARM_SECONDS, samples, signature="generate")
        # upsample_part's first call too, as the other signatures' (`generate` makes one sample).
        generate_command(target, WARM_SECONDS, os.path.join(root, "generate_warm.wav"),
                         "--stream")
        for samples in batches:
            r = served_chain(target, meta, lengths[0], samples, suffix="")
            plain[samples] = {"chain": r, "generate_s": served_generate(
                target, lengths[0], samples, signature="generate")}
            print(f"served plain {lengths[0]:g} s x {samples}: chain {r['total_s']:.1f} s, "
                  f"generate {plain[samples]['generate_s']:.1f} s", flush=True)
            for seconds in lengths:
                r = served_chain(target, meta, seconds, samples)
                served[samples].append(r)
                generate[samples][seconds] = served_generate(target, seconds, samples)
                print(f"served {seconds:g} s x {samples}: chain {r['total_s']:.1f} s ("
                      + ", ".join(f"{k} {v:.1f}" for k, v in r["steps_s"].items())
                      + f"), generate {generate[samples][seconds]:.1f} s", flush=True)
        commands = {name: generate_command(target, lengths[-1], os.path.join(
            root, f"generate_{name}.wav"), *flags)
            for name, flags in (("whole", ()), ("stream", ("--stream",)))}
        print(f"jukebox-tf generate {lengths[-1]:g} s: {commands['whole']['wall_s']:.1f} s; "
              f"--stream: {commands['stream']['wall_s']:.1f} s, the first second of audio "
              f"after {commands['stream']['first_second_s']:.1f} s", flush=True)

    longest = lengths[-1]
    result = {"preset": args.preset, "sample_rate": RATE, "lengths_s": list(lengths),
              "cli": cli, "served": served, "served_generate_s": generate,
              "served_first_chain": first, "server_start_s": server_start,
              "served_plain": plain, "cli_stream": streamed,
              "first_sound_s": streamed["first_second_s"],
              "served_cli_wall_s": commands["whole"]["wall_s"],
              "served_stream_wall_s": commands["stream"]["wall_s"],
              "served_first_sound_s": commands["stream"]["first_second_s"]}
    first_call = {b: first_call_excess(cli[b]) for b in batches}
    result["first_call_s"] = first_call[1]
    result["first_call_cold_s"] = first_call_excess(cli[1], cold=True)
    result["startup_s"] = statistics.median(r["startup_s"] for rs in cli.values() for r in rs)
    for samples in batches:
        r = cli[samples][-1]
        busy = sum(r["level_s"].values()) + r["decode_s"]
        result[f"cli_realtime_factor_{samples}"] = samples * longest / max(
            busy - first_call[samples], 1e-9)
        result[f"cli_whole_realtime_factor_{samples}"] = samples * longest / r["wall_s"]
        result[f"cli_level_realtime_factor_{samples}"] = {
            level: samples * longest / s for level, s in r["level_s"].items()}
        chain = served[samples][-1]
        result[f"served_realtime_factor_{samples}"] = samples * longest / chain["total_s"]
        result[f"served_generate_realtime_factor_{samples}"] = (
            samples * longest / generate[samples][longest])
        result[f"served_plain_realtime_factor_{samples}"] = (
            samples * lengths[0] / plain[samples]["chain"]["total_s"])
        result[f"served_plain_generate_realtime_factor_{samples}"] = (
            samples * lengths[0] / plain[samples]["generate_s"])
    same = [c for c in served[1] if c["seconds"] == lengths[0]][0]
    result["served_first_call_s"] = first["total_s"] - same["total_s"]
    result["meets_targets"] = {
        f"{path}_realtime_factor_{b}": result[f"{path}_realtime_factor_{b}"] >= (1.0 if b == 1
                                                                               else 2.0)
        for path in ("cli", "served") for b in batches}
    print(f"\n{'path':<28} {'1 sample':>9} {'4 samples':>10}   (audio s per wall s, "
          f"{longest:g} s)")
    for key in ("cli_realtime_factor", "cli_whole_realtime_factor", "served_realtime_factor",
                "served_generate_realtime_factor", "served_plain_realtime_factor",
                "served_plain_generate_realtime_factor"):
        print(f"{key:<28} {result[f'{key}_1']:>9.2f} {result[f'{key}_4']:>10.2f}")
    print(f"first second of audio (--stream) after {result['first_sound_s']:.1f} s (sample), "
          f"{result['served_first_sound_s']:.1f} s (generate, served; the whole clip "
          f"{result['served_stream_wall_s']:.1f} s, {result['served_cli_wall_s']:.1f} s "
          f"without --stream)")
    print(f"startup {result['startup_s']:.1f} s, cli first call {result['first_call_s']:.1f} s "
          f"({result['first_call_cold_s']:.1f} s compiling),"
          f" served first call {result['served_first_call_s']:.1f} s, server start "
          f"{server_start:.1f} s")
    return write_result(args.json, result)


if __name__ == "__main__":
    sys.exit(main())

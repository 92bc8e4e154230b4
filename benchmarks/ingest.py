"""Ingest throughput and memory benchmark: `python -m jukebox_tf ingest` on a real music folder.

Each repeat runs the ingest CLI as a subprocess into a fresh temp folder (nothing is reused
between repeats) and measures, from outside:
  * wall time of the whole command (interpreter start, scan, workers, shards, manifest);
  * audio seconds ingested, read from the run's `dataset.json`;
  * peak RSS of the process tree (CLI + worker pool + helpers, summed, sampled every 20 ms)
    and the peak of the largest single process. Summed RSS counts shared pages once per
    process, so it overstates real use a little: an upper bound, which suits a memory cap.
Reported: median wall time, realtime factor = audio seconds / median wall, max peak RSS.

    python benchmarks/ingest.py [--input DIR] --json PATH [--sample-rate 22050]
                                [--workers N] [--repeats 3] [--keep]

Without --input, Debian's `asc-music` (3 MP3s) and `drascula-music` (31 Ogg Vorbis tracks)
packages, ~45 MiB of freely licensed game music, are fetched once with `apt-get download` and
`dpkg -x` into ${XDG_CACHE_HOME:-~/.cache}/jukebox-tf/music/<package>/, outside the repo. That
`music/` folder is the input: the ingest scans recursively, ignores (does not reject) the
packages' docs, and ingests drascula-music's per-language symlinks to its tracks only once.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from bench_common import cpu_info

PACKAGES = ("asc-music", "drascula-music")
TARGETS = {"realtime_factor_min": 100, "peak_rss_mb_max": 1024}
MB = 1 << 20
DONE_MARKER = ".extracted"  # hidden, so the ingest's scan skips it like any dotfile


def music_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "jukebox-tf", "music")


def fetch_package(name: str, cache: str) -> bool:
    """Makes sure `cache/name` holds the extracted package; True if it had to be downloaded."""
    dest = os.path.join(cache, name)
    if os.path.exists(os.path.join(dest, DONE_MARKER)):
        return False
    os.makedirs(cache, exist_ok=True)
    # A hidden temp dir next to the target: an interrupted fetch leaves nothing the ingest
    # would scan, and the final rename is atomic.
    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=cache) as tmp:
        download = ["apt-get", "download", name]
        if subprocess.run(download, cwd=tmp, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True, capture_output=True)
            subprocess.run(download, cwd=tmp, check=True, capture_output=True)
        debs = glob.glob(os.path.join(tmp, f"{name}_*.deb"))
        if len(debs) != 1:
            raise SystemExit(f"apt-get download {name} left {len(debs)} .deb files in {tmp}")
        root = os.path.join(tmp, "root")
        subprocess.run(["dpkg", "-x", debs[0], root], check=True)
        open(os.path.join(root, DONE_MARKER), "w").close()
        shutil.rmtree(dest, ignore_errors=True)  # a partial copy from some older attempt
        os.replace(root, dest)
    return True


def watch_tree_rss(pid: int, done: threading.Event, peaks: dict) -> None:
    """Until `done`, polls `pid` and all its descendants every 20 ms; keeps in `peaks` the
    largest summed RSS ("tree") and the largest RSS of one process ("single"), in bytes."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:  # gone before the first look: nothing to measure
        return
    while not done.wait(0.02):
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.Error:  # the CLI has exited
            continue
        total = 0
        for proc in procs:
            try:  # workers come and go between listing and reading
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            peaks["single"] = max(peaks["single"], rss)
        peaks["tree"] = max(peaks["tree"], total)


def run_once(input_dir: str, sample_rate: int, workers: int | None, keep: bool) -> dict:
    out = tempfile.mkdtemp(prefix="jukebox-tf-ingest-bench-")
    cmd = [sys.executable, "-m", "jukebox_tf", "ingest", input_dir, out,
           "--sample-rate", str(sample_rate), "--quiet"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        done, peaks = threading.Event(), {"tree": 0, "single": 0}
        watcher = threading.Thread(target=watch_tree_rss, args=(proc.pid, done, peaks))
        watcher.start()
        log, _ = proc.communicate()
        wall = time.perf_counter() - started
        done.set()
        watcher.join()
        if proc.returncode != 0:
            raise SystemExit(f"ingest failed (exit {proc.returncode}):\n{log}")
        with open(os.path.join(out, "dataset.json")) as f:
            manifest = json.load(f)
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    return {"wall_seconds": round(wall, 3), "audio_seconds": manifest["total_seconds"],
            "realtime_factor": round(manifest["total_seconds"] / wall, 1),
            "peak_rss_mb": round(peaks["tree"] / MB, 1),
            "peak_single_process_rss_mb": round(peaks["single"] / MB, 1),
            "counts": manifest["counts"], "rejected": manifest["rejected"],
            "output": out if keep else None}


def write_json_atomic(path: str, data: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", help="folder of audio (default: Debian music packages, cached)")
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--workers", type=int, help="ingest processes (default: one per CPU)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep each repeat's output folder")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")

    download_seconds = None
    if args.input is None:
        started = time.perf_counter()
        fetched = [fetch_package(name, music_cache()) for name in PACKAGES]
        if any(fetched):
            download_seconds = round(time.perf_counter() - started, 1)
            print(f"fetched {', '.join(PACKAGES)} in {download_seconds} s", flush=True)
        args.input = music_cache()
    if not os.path.isdir(args.input):
        p.error(f"--input {args.input!r} is not a folder")

    print(f"ingest {args.input} at {args.sample_rate} Hz, workers "
          f"{args.workers or 'default'}, {args.repeats} repeat(s)", flush=True)
    row = "{:>7} {:>8} {:>9} {:>11} {:>19}"
    print(row.format("repeat", "wall s", "audio s", "x realtime", "peak tree RSS MB"), flush=True)
    runs = []
    for i in range(args.repeats):
        r = run_once(args.input, args.sample_rate, args.workers, args.keep)
        runs.append(r)
        print(row.format(i + 1, f"{r['wall_seconds']:.2f}", f"{r['audio_seconds']:.0f}",
                         f"{r['realtime_factor']:.1f}", f"{r['peak_rss_mb']:.0f}"), flush=True)

    wall = statistics.median(r["wall_seconds"] for r in runs)
    audio = statistics.median(r["audio_seconds"] for r in runs)
    rtf = round(audio / wall, 1)
    peak = max(r["peak_rss_mb"] for r in runs)
    print(row.format("median", f"{wall:.2f}", f"{audio:.0f}", f"{rtf:.1f}",
                     f"{statistics.median(r['peak_rss_mb'] for r in runs):.0f}"))
    counts, rejected = runs[-1]["counts"], runs[-1]["rejected"]
    meets = {"realtime_factor_min": rtf >= TARGETS["realtime_factor_min"],
             "peak_rss_mb_max": peak <= TARGETS["peak_rss_mb_max"]}
    result = {
        "audio_seconds": audio, "wall_seconds": wall, "realtime_factor": rtf,
        "peak_rss_mb": peak,
        "peak_single_process_rss_mb": max(r["peak_single_process_rss_mb"] for r in runs),
        "files_ok": counts["files_ok"], "files_rejected": counts["files_rejected"],
        "files_flagged": counts["files_flagged"], "files_ignored": counts["files_ignored"],
        "chunks": counts["chunks"], "rejected": rejected,
        "sample_rate": args.sample_rate, "workers": args.workers, "repeats": args.repeats,
        "input": os.path.abspath(args.input), "download_seconds": download_seconds,
        "per_repeat": runs, "targets": TARGETS, "meets_targets": meets,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "memory_mb": round(psutil.virtual_memory().total / MB), "cpu": cpu_info()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(args.json, result)
    print(f"{counts['files_ok']} files ok, {counts['files_rejected']} rejected, "
          f"{counts['files_ignored']} ignored; peak tree RSS {peak:.0f} MB (max over repeats), "
          f"largest process {result['peak_single_process_rss_mb']:.0f} MB")
    for item in rejected:
        print(f"  rejected {item['path']}: {item['reason']}")
    for key, ok in meets.items():
        print(f"target {key} = {TARGETS[key]}: {'met' if ok else 'MISSED'}")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

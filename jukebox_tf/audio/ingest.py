"""Folder of audio files + metadata sidecar -> sharded TFRecords + `dataset.json` manifest.

Each track is decoded, mixed, resampled and chunked in a worker process, streaming, into its
own part file (`.ingest-parts/<key>.tfrecord`, written under a temp name and renamed). Parts
are keyed by the source file's size and mtime and by the settings, so an interrupted ingest
that is run again reuses the finished tracks. Shards are then assembled from parts (again
temp name then rename) and the manifest is written last: a folder with a `dataset.json` is
complete, and no shard under its final name is ever partial.

A bad file never stops the run: it is listed under `rejected` with a one-line reason.

`read_corpus`, `track_examples` (the one function that turns a file into its chunk Examples)
and `build_manifest` are shared with the TFX AudioExampleGen (`pipeline/components`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import threading
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from jukebox_tf import __version__, storage
from jukebox_tf.errors import JukeboxError
from jukebox_tf.audio import records, schema
from jukebox_tf.audio.chunking import Chunker
from jukebox_tf.audio.decode import (SUPPORTED_EXTENSIONS, UNSUPPORTED_AUDIO_EXTENSIONS,
                                     AudioError, AudioReader)
from jukebox_tf.audio.load import to_channels
from jukebox_tf.audio.metadata import Metadata, Vocabularies, find_metadata, read_metadata
from jukebox_tf.audio.resample import StreamResampler, check_rate, output_length

MANIFEST = "dataset.json"
PARTS_DIR = ".ingest-parts"
SHARD_PATTERN = "data-{index:05d}-of-{count:05d}.tfrecord"
SHARD_TARGET_BYTES = 256 << 20


class IngestError(JukeboxError):
    """The ingest as a whole cannot run (bad arguments, missing input folder)."""


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    sample_rate: int = 44100
    channels: int = 1  # 1: mix to mono; 2: keep stereo (mono sources are duplicated)
    chunk_seconds: float = 24.0
    hop_seconds: float | None = None  # None: chunk_seconds (no overlap)
    min_chunk_seconds: float = 1.0  # shorter tails of a track are dropped
    shards: int | None = None  # None: one per ~256 MiB
    workers: int | None = None  # None: one per CPU; 1 runs in this process
    block_seconds: float = 8.0  # decode granularity; bounds memory per worker
    strict: bool = False  # reject truncated or damaged files instead of keeping what decodes

    def __post_init__(self):
        if self.channels not in (1, 2):
            raise IngestError(f"channels must be 1 or 2, got {self.channels}")
        try:
            check_rate(self.sample_rate)
        except AudioError as e:
            raise IngestError(f"--sample-rate: {e}") from None
        if self.chunk_seconds <= 0:
            raise IngestError(f"--chunk-seconds must be positive, got {self.chunk_seconds}")
        if self.hop_seconds is not None and not 0 < self.hop_seconds <= self.chunk_seconds:
            raise IngestError(f"--hop-seconds must be in (0, chunk seconds = "
                              f"{self.chunk_seconds}], got {self.hop_seconds}")
        if self.shards is not None and self.shards < 1:
            raise IngestError(f"--shards must be at least 1, got {self.shards}")

    @property
    def chunk_frames(self) -> int:
        return int(round(self.chunk_seconds * self.sample_rate))

    @property
    def hop_frames(self) -> int:
        return int(round((self.hop_seconds or self.chunk_seconds) * self.sample_rate))


@dataclasses.dataclass(frozen=True)
class TrackJob:
    path: str
    track_id: str
    labels: schema.TrackLabels
    config: IngestConfig
    part_path: str = ""  # only `ingest` writes parts; the Beam executor streams the Examples


@dataclasses.dataclass
class TrackResult:
    track_id: str
    ok: bool
    reason: str = ""
    flags: list = dataclasses.field(default_factory=list)
    frames: int = 0
    chunks: int = 0
    source_rate: int = 0
    source_channels: int = 0
    container: str = ""
    backend: str = ""
    reused: bool = False


def _summary_path(part_path: str) -> str:
    return part_path[:-len(".tfrecord")] + ".json"


_progress: Callable[[float], None] | None = None


def _init_worker(queue) -> None:
    global _progress
    _progress = queue.put


def process_track(job: TrackJob) -> TrackResult:
    """Decodes, resamples and chunks one file into its part file. Never raises."""
    summary_path = _summary_path(job.part_path)
    if os.path.exists(job.part_path) and os.path.exists(summary_path):
        with open(summary_path) as f:
            result = TrackResult(**json.load(f))
        result.reused = True
        if _progress:
            _progress(result.frames / job.config.sample_rate)
        return result
    result = TrackResult(job.track_id, ok=False)
    with rejecting(result):
        with records.AtomicWriter(job.part_path) as part:
            for example in track_examples(job, result):
                part.write(records.frame_record(example))
        result.ok = True
        with records.AtomicWriter(summary_path, "w") as f:
            json.dump(dataclasses.asdict(result), f)
    return result


@contextlib.contextmanager
def rejecting(result: TrackResult) -> Iterator[None]:
    """Turns an error while decoding one file into `result.reason`, and goes on."""
    try:
        yield
    except AudioError as e:
        result.reason = str(e)
    except Exception as e:  # noqa: BLE001 - one odd file must not end a long ingest
        result.reason = f"unexpected error while decoding: {type(e).__name__}: {e}"


def track_examples(job: TrackJob, result: TrackResult) -> Iterator[bytes]:
    """Decodes, mixes, resamples and chunks one file, streaming: yields its serialized chunk
    Examples in order and fills `result` (source format, chunks; frames and flags once the
    file is exhausted). Raises AudioError for a bad file, possibly after some chunks.

    A file cut short keeps what decodes (flagged), its chunks labelled with the length its
    header declares: the song's length, which the timing conditioning wants."""
    config = job.config
    with AudioReader(job.path, strict=config.strict) as reader:
        info = reader.info
        check_rate(info.sample_rate)
        result.source_rate, result.source_channels = info.sample_rate, info.channels
        result.container, result.backend = info.container, info.backend
        total = output_length(info.frames, info.sample_rate, config.sample_rate)
        resampler = StreamResampler(info.sample_rate, config.sample_rate, config.channels)
        chunker = Chunker(config.chunk_frames, config.hop_frames,
                          int(config.min_chunk_seconds * config.sample_rate))
        block_frames = max(1024, int(config.block_seconds * info.sample_rate))
        peak = 0.0
        emitted = 0  # frames handed to the chunker

        def encode(chunks):
            for offset, chunk in chunks:
                result.chunks += 1
                yield schema.encode_chunk(
                    chunk, sample_rate=config.sample_rate, track_id=job.track_id,
                    offset=offset, track_length=total, labels=job.labels)

        def feed(out):
            nonlocal emitted
            emitted += len(out)
            return encode(chunker.push(out))

        for block in reader.blocks(block_frames):
            block = to_channels(block, config.channels)
            peak = max(peak, float(np.abs(block).max()))
            yield from feed(resampler.process(block))
            if _progress:
                _progress(len(block) / info.sample_rate)
        yield from feed(resampler.flush())
        yield from encode(chunker.finish())
        result.flags.extend(reader.flags)
    result.frames = emitted
    if peak < schema.SILENCE_PEAK:
        result.flags.append("all-silent audio (peak below -80 dBFS); kept")
    if peak > 1.0:
        result.flags.append(f"samples beyond [-1, 1] (peak {peak:.2f}) were clipped")


def _job_key(path: str, track_id: str, labels: schema.TrackLabels, config: IngestConfig) -> str:
    stat = os.stat(path)
    ident = json.dumps([track_id, stat.st_size, stat.st_mtime_ns, dataclasses.asdict(labels),
                        dataclasses.asdict(config) | {"shards": None, "workers": None},
                        schema.SCHEMA_VERSION], sort_keys=True)
    return hashlib.sha1(ident.encode()).hexdigest()[:20]


def scan(input_dir: str, skip: Sequence[str] = ()) -> tuple[list[str], list[dict], list[dict]]:
    """Relative paths of candidate audio files, rejected files (unsupported formats), and
    files ignored with why (not audio, or another path to an audio file already listed, as
    symlinked folders make); hidden files and folders are skipped."""
    skip_abs = {storage.abspath(s) for s in skip}
    candidates, rejected, ignored = [], [], []
    first_path: dict[str, str] = {}  # real path -> the relative path that claimed it
    for root, dirs, files in storage.walk(input_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and storage.abspath(os.path.join(root, d)) not in skip_abs)
        for name in sorted(files):
            full = os.path.join(root, name)
            if name.startswith(".") or storage.abspath(full) in skip_abs:
                continue
            rel = os.path.relpath(full, input_dir).replace(os.sep, "/")
            ext = os.path.splitext(name)[1].lower()
            if ext in SUPPORTED_EXTENSIONS:
                real = storage.realpath(full)
                if real in first_path:
                    ignored.append({"path": rel, "reason": f"same file as {first_path[real]}"})
                    continue
                first_path[real] = rel
                candidates.append(rel)
            elif ext in UNSUPPORTED_AUDIO_EXTENSIONS:
                rejected.append({"path": rel, "reason": f"unsupported format '{ext}' "
                                 f"(supported: {' '.join(SUPPORTED_EXTENSIONS)})"})
            else:
                ignored.append({"path": rel, "reason": "not an audio file"})
    return candidates, rejected, ignored


def _run_jobs(jobs: list[TrackJob], workers: int, progress: bool,
              total_seconds: float) -> list[TrackResult]:
    from tqdm import tqdm

    bar = tqdm(total=round(total_seconds, 1), unit="audio-s", disable=not progress,
               desc="ingest", dynamic_ncols=True, bar_format=(
                   "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} audio-s "
                   "[{elapsed}<{remaining}, {rate_fmt}] {postfix}"))
    results = []

    def done(result: TrackResult):
        results.append(result)
        bad = sum(not r.ok for r in results)
        bar.set_postfix_str(f"files {len(results)}/{len(jobs)}, rejected {bad}")

    if workers <= 1:
        global _progress
        _progress = bar.update
        try:
            for job in jobs:
                done(process_track(job))
        finally:
            _progress = None
    else:
        ctx = multiprocessing.get_context("spawn")  # the caller may hold TensorFlow's threads
        queue = ctx.Queue()
        stop = threading.Event()

        def drain():
            while not stop.is_set() or not queue.empty():
                try:
                    bar.update(queue.get(timeout=0.1))
                except Exception:  # noqa: BLE001 - queue.Empty
                    pass

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        try:
            with ctx.Pool(workers, initializer=_init_worker, initargs=(queue,)) as pool:
                for result in pool.imap_unordered(process_track, jobs):
                    done(result)
        finally:
            stop.set()
            drainer.join()
    bar.close()
    return sorted(results, key=lambda r: r.track_id)


def _assign_shards(sizes: list[int], count: int) -> list[list[int]]:
    """Greedy: each track (in track order) goes to the least-filled shard."""
    shards, fill = [[] for _ in range(count)], [0] * count
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        target = min(range(count), key=lambda s: (fill[s], s))
        shards[target].append(index)
        fill[target] += sizes[index]
    return [sorted(s) for s in shards]


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A folder of audio read for ingest: the candidate files with their labels (in the
    vocabularies built from the metadata rows of files that exist) and what was set aside."""
    input_dir: str
    metadata: Metadata
    vocab: Vocabularies
    candidates: list[str]  # paths relative to input_dir, '/'-separated; also the track ids
    rejected: list[dict]  # {"path", "reason"}: unsupported formats, metadata problems
    ignored: list[dict]

    def jobs(self, config: IngestConfig) -> list[TrackJob]:
        """One job per candidate, without a part file (see `ingest` for those)."""
        return [TrackJob(os.path.join(self.input_dir, rel), rel,
                         self.vocab.labels(self.metadata.rows.get(rel)), config)
                for rel in self.candidates]


def read_corpus(input_dir: str, metadata_path: str | None = None,
                skip: Sequence[str] = ()) -> Corpus:
    """Scans INPUT_DIR (skipping SKIP and the metadata sidecar, found there when not given)."""
    if not storage.isdir(input_dir):
        raise IngestError(f"input folder {input_dir!r} does not exist or is not a folder")
    if metadata_path is not None and not storage.isfile(metadata_path):
        raise IngestError(f"metadata file {metadata_path!r} does not exist")
    metadata_path = metadata_path or find_metadata(input_dir)
    metadata = read_metadata(metadata_path, input_dir) if metadata_path else Metadata()

    candidates, rejected, ignored = scan(input_dir, skip=list(skip) + (
        [metadata_path] if metadata_path else []))
    rejected += metadata.problems
    on_disk = set(candidates)
    for rel, row in metadata.rows.items():
        if rel not in on_disk:
            rejected.append({"path": rel, "reason": f"listed in {os.path.basename(metadata.source)}"
                             f" (row {row.row}) but the file does not exist"})
    vocab = Vocabularies.build(r for rel, r in metadata.rows.items() if rel in on_disk)
    return Corpus(input_dir, metadata, vocab, candidates, rejected, ignored)


def ingest(input_dir: str, output_dir: str, config: IngestConfig = IngestConfig(),
           metadata_path: str | None = None, progress: bool = True) -> dict:
    """Runs the ingest; returns the manifest (also written to OUTPUT_DIR/dataset.json)."""
    started = time.time()
    corpus = read_corpus(input_dir, metadata_path, skip=[output_dir])

    os.makedirs(output_dir, exist_ok=True)
    parts_dir = os.path.join(output_dir, PARTS_DIR)
    os.makedirs(parts_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(parts_dir, "*.tmp-*")):
        os.remove(stale)  # left by a killed worker; never mistaken for a finished part

    jobs = [dataclasses.replace(job, part_path=os.path.join(
                parts_dir, _job_key(job.path, job.track_id, job.labels, config) + ".tfrecord"))
            for job in corpus.jobs(config)]
    total_seconds = sum(_declared_seconds(job.path) for job in jobs)

    workers = max(1, min(config.workers or os.cpu_count() or 1, len(jobs)))
    results = _run_jobs(jobs, workers, progress, total_seconds)
    ok = [r for r in results if r.ok]
    rejected = corpus.rejected + [{"path": r.track_id, "reason": r.reason}
                                  for r in results if not r.ok]

    part_of = {job.track_id: job.part_path for job in jobs}
    shards = _write_shards(output_dir, [part_of[r.track_id] for r in ok], config.shards)
    manifest = build_manifest(corpus, config, ok, shards, rejected, started,
                              reused=sum(r.reused for r in ok))
    write_dataset_files(output_dir, manifest)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return manifest


def _declared_seconds(path: str) -> float:
    """For the progress bar only; unreadable files count as zero."""
    try:
        import soundfile

        info = soundfile.info(path)
        return info.frames / info.samplerate if info.samplerate > 0 else 0.0
    except Exception:  # noqa: BLE001
        return 0.0


def _write_shards(output_dir: str, parts: list[str], requested: int | None) -> list[dict]:
    manifest_path = os.path.join(output_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # while shards change, the folder must not look complete
    sizes = [os.path.getsize(p) for p in parts]
    count = requested or max(1, math.ceil(sum(sizes) / SHARD_TARGET_BYTES))
    count = max(1, min(count, len(parts)))
    shards = []
    for index, members in enumerate(_assign_shards(sizes, count) if parts else [[]]):
        name = SHARD_PATTERN.format(index=index, count=count)
        size = records.concatenate(os.path.join(output_dir, name), [parts[i] for i in members])
        chunks = sum(_count_records(parts[i]) for i in members)
        shards.append({"file": name, "tracks": len(members), "chunks": chunks, "bytes": size})
    keep = {s["file"] for s in shards}
    for old in glob.glob(os.path.join(output_dir, "data-*-of-*.tfrecord")):
        if os.path.basename(old) not in keep:
            os.remove(old)
    return shards


def _count_records(path: str) -> int:
    with open(_summary_path(path)) as f:
        return json.load(f)["chunks"]


def _write_vocab(output_dir: str, name: str, vocab: Sequence[str]) -> None:
    with records.AtomicWriter(os.path.join(output_dir, name), "w") as f:
        f.write("".join(v.replace("\n", " ") + "\n" for v in vocab))


def write_dataset_files(output_dir: str, manifest: dict) -> None:
    """The vocabulary files, then the manifest (last: it marks the folder complete)."""
    _write_vocab(output_dir, "artists.txt", manifest["artists"])
    _write_vocab(output_dir, "genres.txt", manifest["genres"])
    with records.AtomicWriter(os.path.join(output_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)


def flagged_files(ok: Sequence[TrackResult]) -> list[dict]:
    """{"path", "reason"} per flag of the tracks kept (truncated, silent, clipped...)."""
    return [{"path": r.track_id, "reason": flag} for r in ok for flag in r.flags]


def build_manifest(corpus: Corpus, config: IngestConfig, ok: Sequence[TrackResult],
                   shards: list[dict], rejected: list[dict], started: float, reused: int = 0,
                   compression: str = "") -> dict:
    """The `dataset.json` of a folder holding the chunks of the tracks OK in SHARDS (each
    {"file", "tracks", "chunks", "bytes"}, TFRecord files compressed with COMPRESSION)."""
    metadata, vocab, ignored = corpus.metadata, corpus.vocab, corpus.ignored
    flagged = flagged_files(ok)
    frames = sum(r.frames for r in ok)
    seconds = frames / config.sample_rate
    wall = time.time() - started
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "jukebox_tf_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input_dir": storage.abspath(corpus.input_dir),
        "metadata_file": metadata.source,
        "config": dataclasses.asdict(config),
        "sample_rate": config.sample_rate,
        "channels": config.channels,
        "chunk_frames": config.chunk_frames,
        "hop_frames": config.hop_frames,
        "counts": {"files_ok": len(ok), "files_rejected": len(rejected),
                   "files_flagged": len({f["path"] for f in flagged}),
                   "files_ignored": len(ignored), "files_reused": reused,
                   "chunks": sum(s["chunks"] for s in shards), "shards": len(shards)},
        "total_seconds": round(seconds, 3),
        "total_hours": round(seconds / 3600, 4),
        "wall_seconds": round(wall, 2),
        "realtime_factor": round(seconds / wall, 1) if wall > 0 else None,
        "artists": list(vocab.artists),
        "genres": list(vocab.genres),
        "compression": compression,
        "shards": shards,
        "tracks": [{"track_id": r.track_id, "seconds": round(r.frames / config.sample_rate, 3),
                    "chunks": r.chunks, "source_sample_rate": r.source_rate,
                    "source_channels": r.source_channels, "format": r.container,
                    "decoder": r.backend, "flags": r.flags} for r in ok],
        "rejected": rejected,
        "flagged": flagged,
        "ignored": ignored,
        "warnings": metadata.warnings,
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def format_summary(manifest: dict, output_dir: str) -> str:
    counts = manifest["counts"]
    lines = [
        f"ingested {counts['files_ok']} file(s), {_duration(manifest['total_seconds'])} of audio "
        f"at {manifest['sample_rate']} Hz into {counts['chunks']} chunks in "
        f"{counts['shards']} shard(s) ({manifest['wall_seconds']:.1f} s, "
        f"{manifest['realtime_factor'] or 0:.0f}x real time)",
        f"  artists: {len(manifest['artists']) - 1} + unknown, "
        f"genres: {len(manifest['genres']) - 1} + unknown",
        f"  manifest: {os.path.join(output_dir, MANIFEST)}",
    ]
    if counts["files_reused"]:
        lines.append(f"  reused {counts['files_reused']} track(s) finished by an earlier run")
    for title, key in (("rejected", "rejected"), ("flagged (kept)", "flagged")):
        if manifest[key]:
            lines.append(f"{title}: {len(manifest[key])}")
            lines += [f"  {item['path']}: {item['reason']}" for item in manifest[key]]
    if manifest["ignored"]:
        lines.append(f"ignored {len(manifest['ignored'])} file(s), e.g. " + ", ".join(
            f"{i['path']} ({i['reason']})" for i in manifest["ignored"][:3]))
    lines += [f"warning: {w}" for w in manifest["warnings"]]
    return "\n".join(lines)

"""AudioExampleGen: a folder of audio files + metadata sidecar -> train/eval chunk Examples.

A `FileBasedExampleGen` whose Beam executor emits exactly the Examples `jukebox-tf ingest`
writes: both run `jukebox_tf.audio.ingest.track_examples` on the jobs of `read_corpus`.

    example_gen = AudioExampleGen(input_base="/data/audio",
                                  ingest_config=IngestConfig(sample_rate=22050, chunk_seconds=4))

Output `examples`: `Split-<name>/` per split of `output_config` (default train 2 : eval 1), each
a complete jukebox-tf dataset folder (`dataset.json` with `"compression": "GZIP"`, artists.txt,
genres.txt, TFX's `data_tfrecord-*.gz`), so `load_manifest`/`make_dataset` read it; plus
`ingest_report.json`, the integer custom properties `files_ok` and `files_rejected`, and
`custom_split_pattern` (`Split-<name>/data_tfrecord-*.gz`, so that StatisticsGen and other
tfxio readers skip the manifest files).

Tracks, not chunks, are split: a track goes to the split its id hashes to (the split's share of
hash buckets as in TFX), and with at least as many good tracks as splits none is left empty.
Bad files are rejected with a reason and reported; only a folder with no good file fails.
Each split's manifest lists that split's tracks and the whole folder's rejected and ignored
files; `ingest_report.json` adds the split of each track. Paths may be local folders or URIs
(gs://...): files go through `jukebox_tf.storage` and Beam's own filesystems.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import os
import time
from typing import Any, Dict, Iterator, List, Sequence

import apache_beam as beam
from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.example_gen.driver import FileBasedDriver
from tfx.components.example_gen.write_split import DEFAULT_TF_RECORD_FILE_NAME
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import proto_utils

from jukebox_tf import storage
from jukebox_tf.audio import records
from jukebox_tf.audio.ingest import (Corpus, IngestConfig, IngestError, TrackJob, TrackResult,
                                     build_manifest, flagged_files, read_corpus, rejecting,
                                     track_examples, write_dataset_files)

INGEST_CONFIG_KEY = "ingest_config"  # exec property: JSON of the IngestConfig fields
REPORT = "ingest_report.json"
RESULTS = "results"
DATA_FILES = f"{DEFAULT_TF_RECORD_FILE_NAME}-*.gz"  # what the base executor's WriteSplit writes
_WORK_DIR_KEY = "_audio_work_dir"  # where the pipeline leaves per-track results for `Do`
# Beam decides the parallelism and the number of output files.
_IGNORED_FIELDS = ("shards", "workers")


def ingest_config_json(config: IngestConfig) -> str:
    """The exec property value: stable (sorted keys) so an unchanged setting keeps the cache."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _IGNORED_FIELDS}
    return json.dumps(fields, sort_keys=True)


def ingest_config_from_json(text: str) -> IngestConfig:
    try:
        fields = json.loads(text)
        return IngestConfig(**fields)
    except (json.JSONDecodeError, TypeError) as e:
        raise IngestError(f"exec property {INGEST_CONFIG_KEY!r}: not a JSON object of "
                          f"IngestConfig fields ({e}): {text!r:.200}") from None


def split_buckets(output_config: example_gen_pb2.Output) -> tuple[list[str], list[int]]:
    """Split names and their hash_buckets; only hash splitting by track is supported."""
    splits = output_config.split_config.splits
    if not splits:
        raise IngestError("AudioExampleGen needs output_config.split_config.splits (it splits "
                          "one folder by track); input splits are not supported")
    if output_config.split_config.partition_feature_name:
        raise IngestError("AudioExampleGen always partitions by track; "
                          "split_config.partition_feature_name is not supported")
    bad = [s.name for s in splits if s.hash_buckets < 1]
    if bad:
        raise IngestError(f"output_config: split(s) {', '.join(bad)} need hash_buckets >= 1")
    return [s.name for s in splits], [s.hash_buckets for s in splits]


def train_eval_output_config(eval_ratio: float) -> example_gen_pb2.Output:
    """Splits 'train' and 'eval' holding about 1 - EVAL_RATIO and EVAL_RATIO of the tracks."""
    if not 0 < eval_ratio < 1:
        raise IngestError(f"eval_ratio must be in (0, 1), got {eval_ratio}")
    eval_buckets = min(99, max(1, round(100 * eval_ratio)))
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=100 - eval_buckets),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_buckets)]))


def assign_splits(track_ids: Sequence[str], names: Sequence[str],
                  buckets: Sequence[int]) -> dict[str, str]:
    """Track id -> split name, deterministically.

    A track lands in the split its sha256 hash bucket falls in (as TFX's own partitioning,
    bucket counts as weights). With at least as many tracks as splits, an empty split then
    takes the last track (in id order) of the largest split, so every split is non-empty.
    """
    bounds = list(itertools.accumulate(buckets))
    members: dict[str, list[str]] = {name: [] for name in names}
    for track_id in sorted(track_ids):
        bucket = int(hashlib.sha256(track_id.encode("utf-8")).hexdigest(), 16) % bounds[-1]
        members[names[bisect.bisect(bounds, bucket)]].append(track_id)
    if len(track_ids) >= len(names):
        for name in names:
            if not members[name]:
                largest = max(names, key=lambda n: len(members[n]))  # first of equals
                members[name].append(members[largest].pop())
    return {track_id: name for name, ids in members.items() for track_id in ids}


def _decode_track(job: TrackJob):
    """Main output (track_id, serialized chunk); tagged RESULTS output: the TrackResult as
    JSON. A file that fails part-way has yielded some chunks; `_route` drops them."""
    result = TrackResult(job.track_id, ok=False)
    with rejecting(result):
        for example in track_examples(job, result):
            yield job.track_id, example
        result.ok = True
    yield beam.pvalue.TaggedOutput(RESULTS, json.dumps(dataclasses.asdict(result)))


def _route(item, num_partitions: int, assignment: dict, index: dict) -> int:
    """The split of a chunk's track; the last partition (dropped) for rejected tracks."""
    split = assignment.get(item[0])
    return index[split] if split is not None else num_partitions - 1


class Executor(BaseExampleGenExecutor):
    """Beam executor: decode tracks in parallel, split by track, then describe each split."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError(
            "AudioExampleGen splits by track, which the per-record partition of the base "
            "GenerateExamplesByBeam cannot do; its GenerateExamplesByBeam reads the input")

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
        config, names, buckets = _settings(exec_properties)
        # Scanned here, in the launching process; `Do` reports on this scan after the pipeline.
        self._corpus = read_corpus(exec_properties[standard_component_specs.INPUT_BASE_KEY])
        work_dir = exec_properties[_WORK_DIR_KEY]

        decoded = (pipeline
                   | "CreateJobs" >> beam.Create(self._corpus.jobs(config))
                   # Reshuffle: one worker per track, not one for the whole Create bundle.
                   | "SpreadJobs" >> beam.Reshuffle()
                   | "DecodeTracks" >> beam.FlatMap(_decode_track).with_outputs(
                       RESULTS, main="chunks"))
        results = decoded[RESULTS]
        _ = results | "WriteResults" >> beam.io.WriteToText(
            os.path.join(work_dir, RESULTS), file_name_suffix=".jsonl")
        assignment = (results
                      | "OkTrackIds" >> beam.FlatMap(
                          lambda line: [r["track_id"] for r in [json.loads(line)] if r["ok"]])
                      | "AllOkTrackIds" >> beam.combiners.ToList()
                      | "AssignSplits" >> beam.Map(assign_splits, names, buckets))
        parts = decoded.chunks | "SplitByTrack" >> beam.Partition(
            _route, len(names) + 1, beam.pvalue.AsSingleton(assignment),
            {name: i for i, name in enumerate(names)})
        return {name: parts[i] | f"DropTrackId[{name}]" >> beam.Values()
                for i, name in enumerate(names)}

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        started = time.time()
        artifacts = output_dict[standard_component_specs.EXAMPLES_KEY]
        examples = artifact_utils.get_single_instance(artifacts)
        work_dir = os.path.join(examples.uri, ".audio-example-gen")
        storage.rmtree(work_dir, ignore_errors=True)
        super().Do(input_dict, output_dict, {**exec_properties, _WORK_DIR_KEY: work_dir})

        corpus: Corpus = self._corpus
        config, names, buckets = _settings(exec_properties)
        results = sorted(_read_results(work_dir), key=lambda r: r.track_id)
        ok = [r for r in results if r.ok]
        rejected = corpus.rejected + [{"path": r.track_id, "reason": r.reason}
                                      for r in results if not r.ok]
        assignment = assign_splits([r.track_id for r in ok], names, buckets)

        split_counts = {}
        for name in names:
            split_dir = artifact_utils.get_split_uri(artifacts, name)
            split_ok = [r for r in ok if assignment[r.track_id] == name]
            shards = _describe_shards(split_dir)
            expected = sum(r.chunks for r in split_ok)
            if sum(s["chunks"] for s in shards) != expected:
                raise IngestError(f"{split_dir}: the data files hold "
                                  f"{sum(s['chunks'] for s in shards)} chunks, the tracks of "
                                  f"split {name!r} {expected}")
            manifest = build_manifest(corpus, config, split_ok, shards, rejected, started,
                                      compression="GZIP")
            write_dataset_files(split_dir, manifest)
            split_counts[name] = {"tracks": len(split_ok), "chunks": expected}

        report = _report(corpus, config, ok, rejected, assignment, split_counts)
        with records.AtomicWriter(os.path.join(examples.uri, REPORT), "w") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        for artifact in artifacts:
            artifact.set_int_custom_property("files_ok", len(ok))
            artifact.set_int_custom_property("files_rejected", len(rejected))
            # Readers of the default pattern `Split-<name>/*` would take dataset.json and
            # the vocabularies for data files; StatisticsGen and tfxio honour this instead.
            artifact.set_string_custom_property(
                examples_utils.CUSTOM_SPLIT_PATTERN_PROPERTY_NAME,
                json.dumps({name: f"Split-{name}/{DATA_FILES}" for name in names}))
        storage.rmtree(work_dir, ignore_errors=True)
        if not ok:
            reasons = "; ".join(f"{r['path']}: {r['reason']}" for r in rejected[:5])
            raise IngestError(f"no audio file in {corpus.input_dir!r} could be ingested "
                              f"({len(rejected)} rejected{': ' + reasons if reasons else ''}); "
                              f"see {os.path.join(examples.uri, REPORT)}")


def _settings(exec_properties: Dict[str, Any]) -> tuple[IngestConfig, list[str], list[int]]:
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return (ingest_config_from_json(exec_properties[INGEST_CONFIG_KEY]),
            *split_buckets(output_config))


def _read_results(work_dir: str) -> Iterator[TrackResult]:
    for path in sorted(storage.glob(os.path.join(work_dir, RESULTS + "*.jsonl"))):
        with storage.open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield TrackResult(**json.loads(line))


def _describe_shards(split_dir: str) -> list[dict]:
    """The manifest's shard entries for the gzipped TFRecord files TFX wrote in SPLIT_DIR."""
    import tensorflow as tf

    shards = []
    for path in sorted(storage.glob(os.path.join(split_dir, DATA_FILES))):
        track_ids, chunks = set(), 0
        for batch in tf.data.TFRecordDataset(path, compression_type="GZIP").batch(256):
            ids = tf.io.parse_example(batch, {"track_id": tf.io.FixedLenFeature([], tf.string)})
            track_ids.update(ids["track_id"].numpy().tolist())
            chunks += int(batch.shape[0])
        shards.append({"file": os.path.basename(path), "tracks": len(track_ids),
                       "chunks": chunks, "bytes": storage.getsize(path)})
    return shards


def _report(corpus: Corpus, config: IngestConfig, ok: Sequence[TrackResult],
            rejected: list[dict], assignment: dict, split_counts: dict) -> dict:
    flagged = flagged_files(ok)
    return {
        "input_dir": storage.abspath(corpus.input_dir),
        "metadata_file": corpus.metadata.source,
        "config": dataclasses.asdict(config),
        "counts": {"files_ok": len(ok), "files_rejected": len(rejected),
                   "files_flagged": len({f["path"] for f in flagged}),
                   "files_ignored": len(corpus.ignored)},
        "splits": split_counts,
        "track_splits": {r.track_id: assignment[r.track_id] for r in ok},
        "rejected": rejected,
        "flagged": flagged,
        "ignored": corpus.ignored,
        "warnings": corpus.metadata.warnings,
    }


def folder_fingerprint(input_base: str) -> str:
    """Path, size and mtime of every file under INPUT_BASE that a scan would see (hidden
    files and folders skipped), hashed: any added, removed or rewritten file changes it."""
    digest, files, size = hashlib.sha256(), 0, 0
    for root, dirs, names in storage.walk(input_base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = os.path.join(root, name)
            nbytes, mtime_ns = storage.size_and_mtime_ns(path)
            rel = os.path.relpath(path, input_base).replace(os.sep, "/")
            digest.update(json.dumps([rel, nbytes, mtime_ns]).encode() + b"\n")
            files, size = files + 1, size + nbytes
    return f"audio-folder:files:{files},total_bytes:{size},sha256:{digest.hexdigest()}"


class Driver(FileBasedDriver):
    """TFX fingerprints (for its cache) only what INPUT_CONFIG's pattern matches at the top of
    input_base; audio often lives in subfolders, so every file the scan sees counts here.
    (Kubeflow V2 runs its own file-based driver, with TFX's fingerprint.)"""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info,
                                                          component_info)
        exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = folder_fingerprint(
            exec_properties[standard_component_specs.INPUT_BASE_KEY])
        return exec_properties


class AudioExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {**standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
                  INGEST_CONFIG_KEY: ExecutionParameter(type=str)}


class AudioExampleGen(FileBasedExampleGen):
    """Audio folder -> chunk Examples split by track (see the module docstring)."""

    SPEC_CLASS = AudioExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = Driver

    def __init__(self, input_base: str, ingest_config: IngestConfig = IngestConfig(),
                 output_config: example_gen_pb2.Output | None = None,
                 input_config: example_gen_pb2.Input | None = None,
                 eval_ratio: float | None = None):
        """INPUT_BASE is scanned (and, by the local driver, fingerprinted) recursively,
        whatever INPUT_CONFIG's pattern (default '*'); OUTPUT_CONFIG's splits (default
        train 2 : eval 1) weigh the hash split by track. `ingest_config.shards` and
        `.workers` are ignored: Beam sets the output files and the parallelism. EVAL_RATIO
        is a shorthand for `train_eval_output_config(eval_ratio)`."""
        if eval_ratio is not None:
            if output_config is not None:
                raise IngestError("give AudioExampleGen output_config or eval_ratio, not both")
            output_config = train_eval_output_config(eval_ratio)
        input_config = input_config or utils.make_default_input_config()
        output_config = output_config or utils.make_default_output_config(input_config)
        split_buckets(output_config)  # fail at pipeline definition, not at run time
        spec = AudioExampleGenSpec(
            input_base=input_base, input_config=input_config, output_config=output_config,
            custom_config=None, range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            ingest_config=ingest_config_json(ingest_config),
            examples=types.Channel(type=standard_artifacts.Examples))
        # FileBasedExampleGen.__init__ builds its own spec class, without `ingest_config`.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)

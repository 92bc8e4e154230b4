"""AudioExampleGen: the executor emits the same chunk Examples as `jukebox-tf ingest`, splits by
track, reports bad files without failing, and each split is a readable jukebox-tf dataset."""

import collections
import dataclasses
import gzip
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from conftest import tone
from jukebox_tf.audio import records
from jukebox_tf.audio.dataset import load_manifest, make_dataset
from jukebox_tf.audio.demo_data import make_demo_data
from jukebox_tf.audio.ingest import IngestConfig, IngestError, ingest
from jukebox_tf.errors import JukeboxError
from pipeline.components.audio_example_gen import (INGEST_CONFIG_KEY, REPORT, AudioExampleGen,
                                                   Executor, assign_splits, ingest_config_json)

# Small decode blocks: the truncated file yields two chunks before its end is judged.
CONFIG = IngestConfig(sample_rate=8000, chunk_seconds=1.0, min_chunk_seconds=0.25, workers=1,
                      block_seconds=1.0)
STRICT = dataclasses.replace(CONFIG, strict=True)
SPLITS = ("train", "eval")


def exec_properties(input_dir, config=CONFIG, output_config=None):
    output_config = output_config or example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=2),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)]))
    return {
        standard_component_specs.INPUT_BASE_KEY: str(input_dir),
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
                name="single_split", pattern="*")])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output_config),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        standard_component_specs.OUTPUT_FILE_FORMAT_KEY: example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        INGEST_CONFIG_KEY: ingest_config_json(config),
    }


def run_executor(input_dir, uri, **kw):
    examples = standard_artifacts.Examples()
    examples.uri = str(uri)
    Executor().Do(input_dict={}, output_dict={"examples": [examples]},
                  exec_properties=exec_properties(input_dir, **kw))
    return examples


def chunks_by_track(paths, compression):
    out = collections.defaultdict(set)
    for record in tf.data.TFRecordDataset([str(p) for p in paths], compression_type=compression):
        raw = record.numpy()
        track = tf.train.Example.FromString(raw).features.feature["track_id"].bytes_list.value[0]
        out[track.decode()].add(raw)
    return dict(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio_example_gen")
    src = root / "in"
    make_demo_data(src, seed=0, num_artists=2, tracks_per_artist=3, track_seconds=2.5,
                   sample_rate=16000)
    (src / "bad.wav").write_bytes(np.random.RandomState(0).bytes(4096))
    (src / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 64)
    sf.write(str(src / "truncated.flac"), tone(6.0, 8000, 300.0), 8000)
    data = (src / "truncated.flac").read_bytes()
    (src / "truncated.flac").write_bytes(data[:len(data) // 2])
    ingest(str(src), str(root / "ingested"), CONFIG, progress=False)
    ingest(str(src), str(root / "ingested-strict"), STRICT, progress=False)
    examples = run_executor(src, root / "examples")
    run_executor(src, root / "examples-strict", config=STRICT)
    return root, examples


@pytest.mark.parametrize("strict", [False, True])
def test_chunks_are_byte_identical_to_the_library_ingest(corpus, strict):
    root, _ = corpus
    suffix = "-strict" if strict else ""
    reference = load_manifest(str(root / f"ingested{suffix}"))
    expected = chunks_by_track([root / f"ingested{suffix}" / s["file"]
                                for s in reference["shards"]], "")
    got = {}
    for split in SPLITS:
        split_chunks = chunks_by_track(
            (root / f"examples{suffix}" / f"Split-{split}").glob("*.gz"), "GZIP")
        assert not set(split_chunks) & set(got)  # never the same track in two splits
        got.update(split_chunks)
    # The truncated file keeps the 2.56 s that decode (3 chunks); strict, it is rejected, and
    # the chunks it gave before its end was judged are gone.
    truncated = expected.pop("truncated.flac", set())
    assert len(truncated) == (0 if strict else 3)
    assert len(expected) == 6 and sum(map(len, expected.values())) == 18  # 6 tracks x 3 chunks
    assert got == {**expected, **({"truncated.flac": truncated} if truncated else {})}


def test_splits_share_no_track_and_are_readable_datasets(corpus):
    root, examples = corpus
    report = json.loads((root / "examples" / REPORT).read_text())
    manifests = {s: load_manifest(str(root / "examples" / f"Split-{s}")) for s in SPLITS}
    tracks = {s: {t["track_id"] for t in m["tracks"]} for s, m in manifests.items()}
    assert tracks["train"] and tracks["eval"] and not tracks["train"] & tracks["eval"]
    assert report["track_splits"] == {t: s for s in SPLITS for t in tracks[s]}
    assert manifests["train"]["artists"] == manifests["eval"]["artists"] == [
        "unknown"] + sorted({r["artist"] for r in _metadata_rows(root / "in")})
    assert manifests["train"]["genres"] == manifests["eval"]["genres"]
    for split, manifest in manifests.items():
        split_dir = root / "examples" / f"Split-{split}"
        assert manifest["compression"] == "GZIP"
        assert (split_dir / "artists.txt").read_text().splitlines() == manifest["artists"]
        ds = make_dataset(str(split_dir), batch_size=1, shuffle=False, repeat=False,
                          random_crop=False)
        batches = list(ds)
        assert len(batches) == 3 * len(tracks[split]) == manifest["counts"]["chunks"]
        assert report["splits"][split] == {"tracks": len(tracks[split]),
                                           "chunks": len(batches)}
        assert {tuple(b["audio"].shape) for b in batches} == {(1, 8000, 1)}
        assert {b["track_id"][0].numpy().decode() for b in batches} == tracks[split]
        # what StatisticsGen & co. read: the data files, not dataset.json or the vocabularies
        pattern = json.loads(examples.get_string_custom_property("custom_split_pattern"))[split]
        assert sorted(p.name for p in (root / "examples").glob(pattern)) == sorted(
            s["file"] for s in manifest["shards"])


def _metadata_rows(src):
    import csv

    with open(src / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_bad_files_are_reported_not_fatal(corpus):
    root, examples = corpus
    report = json.loads((root / "examples" / REPORT).read_text())
    reasons = {r["path"]: r["reason"] for r in report["rejected"]}
    assert set(reasons) == {"bad.wav", "song.m4a"}
    assert reasons["song.m4a"].startswith("unsupported format '.m4a'")
    assert reasons["bad.wav"].startswith("not an audio file: unrecognised header bytes")
    reference = load_manifest(str(root / "ingested"))
    assert report["rejected"] == reference["rejected"]
    [flag] = [f for f in report["flagged"] if f["path"] == "truncated.flac"]
    assert flag["reason"].startswith("truncated: the header declares 6.00 s, 2.")
    assert report["flagged"] == reference["flagged"]  # the CLI and the pipeline agree
    assert report["counts"]["files_ok"] == 7 and report["counts"]["files_rejected"] == 2
    assert examples.get_int_custom_property("files_ok") == 7
    assert examples.get_int_custom_property("files_rejected") == 2
    assert not list((root / "examples").rglob("*.tmp-*"))
    strict = json.loads((root / "examples-strict" / REPORT).read_text())
    assert strict["rejected"] == load_manifest(str(root / "ingested-strict"))["rejected"]
    reasons = {r["path"]: r["reason"] for r in strict["rejected"]}
    assert reasons["truncated.flac"] == flag["reason"].split("; kept")[0] + "; rejected (strict)"


def test_a_folder_without_a_good_file_fails_clearly(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.wav").write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(IngestError, match=r"no audio file in .* could be ingested "
                                          r"\(1 rejected: bad.wav: "):
        run_executor(tmp_path / "in", tmp_path / "examples")
    report = json.loads((tmp_path / "examples" / REPORT).read_text())
    assert report["counts"]["files_rejected"] == 1


def test_split_assignment_is_by_track_weighted_and_never_leaves_a_split_empty():
    ids = [f"artist/track_{i:03d}.wav" for i in range(300)]
    assignment = assign_splits(ids, SPLITS, [2, 1])
    assert assignment == assign_splits(list(reversed(ids)), SPLITS, [2, 1])  # deterministic
    assert 170 < list(assignment.values()).count("train") < 230
    # the same track keeps its split when others come and go
    assert assign_splits(ids[:100], SPLITS, [2, 1]) == {i: assignment[i] for i in ids[:100]}
    same = [i for i in ids if assignment[i] == "train"][:2]
    assert sorted(assign_splits(same, SPLITS, [2, 1]).values()) == ["eval", "train"]
    assert assign_splits(same[:1], SPLITS, [2, 1]) == {same[0]: "train"}


def test_component_exec_properties_follow_the_ingest_settings(tmp_path):
    def props(**kw):
        return AudioExampleGen(str(tmp_path), ingest_config=IngestConfig(**kw)).exec_properties

    base = props(sample_rate=22050)
    assert json.loads(base[INGEST_CONFIG_KEY])["sample_rate"] == 22050
    assert props(sample_rate=22050, workers=3) == base  # Beam sets the parallelism
    assert props(sample_rate=22050, chunk_seconds=2.0)[INGEST_CONFIG_KEY] != base[
        INGEST_CONFIG_KEY]
    buckets = [(s.name, s.hash_buckets) for s in json_splits(AudioExampleGen(
        str(tmp_path), eval_ratio=0.25).exec_properties)]
    assert buckets == [("train", 75), ("eval", 25)]
    with pytest.raises(IngestError, match="partition_feature_name"):
        AudioExampleGen(str(tmp_path), output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=1)],
                partition_feature_name="artist")))


def json_splits(properties):
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return output_config.split_config.splits


def test_gzip_manifest_reads_the_same_batches(corpus, tmp_path):
    root, _ = corpus
    plain = root / "ingested"
    packed = tmp_path / "gz"
    shutil.copytree(plain, packed)
    manifest = json.loads((packed / "dataset.json").read_text())
    for shard in manifest["shards"]:
        with gzip.open(packed / shard["file"], "wb") as f:
            f.write((plain / shard["file"]).read_bytes())
    with records.AtomicWriter(str(packed / "dataset.json"), "w") as f:
        json.dump(manifest | {"compression": "GZIP"}, f)

    def batches(data_dir):
        return [{k: v.numpy() for k, v in b.items()} for b in make_dataset(
            str(data_dir), batch_size=4, shuffle=False, repeat=False, random_crop=False,
            drop_remainder=False)]

    got, want = batches(packed), batches(plain)
    assert len(got) == len(want) == 6  # 21 chunks
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for key in w:
            np.testing.assert_array_equal(g[key], w[key])

    with records.AtomicWriter(str(packed / "dataset.json"), "w") as f:
        json.dump(manifest | {"compression": "ZLIB"}, f)
    with pytest.raises(JukeboxError, match="unknown compression 'ZLIB'"):
        load_manifest(str(packed))


def test_local_runner_caches_until_a_nested_file_changes(tmp_path):
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    src = tmp_path / "in"
    for i in range(2):
        (src / f"artist{i}").mkdir(parents=True)
        sf.write(str(src / f"artist{i}" / "a.wav"), tone(1.0, 8000, 200.0 * (i + 1)), 8000)
    db = metadata.sqlite_metadata_connection_config(str(tmp_path / "mlmd.sqlite"))

    def run():
        gen = AudioExampleGen(str(src), ingest_config=CONFIG)
        LocalDagRunner().run(pipeline.Pipeline(
            pipeline_name="example_gen", pipeline_root=str(tmp_path / "root"),
            components=[gen], enable_cache=True, metadata_connection_config=db))
        return metadata_store.MetadataStore(db).get_artifacts_by_type("Examples")

    first = run()
    assert len(first) == 1 and first[0].custom_properties["files_ok"].int_value == 2
    assert len(run()) == 1  # nothing changed: the cached output is reused
    sf.write(str(src / "artist1" / "a.wav"), tone(1.5, 8000, 300.0), 8000)
    assert len(run()) == 2  # a file two levels down changed: ingested again

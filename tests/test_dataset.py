"""The tf.data reader: windows, labels, crops and sharding agree with what was ingested."""

import json

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from jukebox_tf.audio.dataset import load_manifest, make_dataset
from jukebox_tf.audio.ingest import IngestConfig, ingest
from jukebox_tf.errors import JukeboxError


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    (root / "in").mkdir()
    rng = np.random.RandomState(0)
    for i in range(4):
        sf.write(str(root / "in" / f"t{i}.wav"), (0.3 * rng.randn(8000 * (3 + i))).astype(
            np.float32), 8000, subtype="PCM_16")
    (root / "in" / "metadata.csv").write_text(
        "path,artist,genre\nt0.wav,Ann,rock\nt1.wav,Ben,jazz rock\nt2.wav,Ann,\n")
    ingest(str(root / "in"), str(root / "out"), IngestConfig(
        sample_rate=8000, chunk_seconds=2.0, shards=2, workers=1), progress=False)
    return root


def source(root, track_id):
    return sf.read(str(root / "in" / track_id.decode()), dtype="float32")[0]


def test_windows_are_the_source_audio_at_their_offsets(dataset_dir):
    ds = make_dataset(str(dataset_dir / "out"), batch_size=4, sample_length=4000, seed=3)
    seen_offsets = set()
    for batch in ds.take(6):
        assert batch["audio"].shape == (4, 4000, 1)
        assert batch["audio"].dtype == tf.float32
        for i in range(4):
            x = source(dataset_dir, batch["track_id"][i].numpy())
            offset, n = int(batch["offset"][i]), int(batch["num_samples"][i])
            np.testing.assert_array_equal(batch["audio"][i, :n, 0], x[offset:offset + n])
            assert not np.any(batch["audio"][i, n:].numpy())  # padding past the end
            assert int(batch["track_length"][i]) == len(x)
            seen_offsets.add(offset % 16000)
    assert len(seen_offsets) > 8  # random crops, not always the chunk start


def test_labels_and_genre_padding(dataset_dir):
    manifest = load_manifest(str(dataset_dir / "out"))
    ds = make_dataset(str(dataset_dir / "out"), batch_size=1, shuffle=False, repeat=False,
                      random_crop=False, max_genres=3)
    labels = {}
    for b in ds:
        labels[b["track_id"][0].numpy().decode()] = (
            int(b["artist_id"][0]), b["genre_ids"][0].numpy().tolist())
    rock, jazz = manifest["genres"].index("rock"), manifest["genres"].index("jazz")
    assert labels["t0.wav"] == (manifest["artists"].index("Ann"), [rock, -1, -1])
    assert labels["t1.wav"] == (manifest["artists"].index("Ben"), [jazz, rock, -1])
    assert labels["t3.wav"] == (0, [0, -1, -1])


def test_every_chunk_read_once_without_repeat(dataset_dir):
    manifest = load_manifest(str(dataset_dir / "out"))
    ds = make_dataset(str(dataset_dir / "out"), batch_size=3, shuffle=False, repeat=False,
                      random_crop=False, drop_remainder=False)
    keys = [(t, int(o)) for b in ds for t, o in zip(b["track_id"].numpy(), b["offset"])]
    assert len(keys) == len(set(keys)) == manifest["counts"]["chunks"]


def test_input_context_shards_files_across_pipelines(dataset_dir):
    def tracks(pipeline_id):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
        ds = make_dataset(str(dataset_dir / "out"), batch_size=2, shuffle=False, repeat=False,
                          input_context=ctx, drop_remainder=False)
        sizes = {int(b["audio"].shape[0]) for b in ds}
        assert sizes <= {1}  # per-replica batch = global 2 / 2 replicas
        return {t for b in ds for t in b["track_id"].numpy()}

    a, b = tracks(0), tracks(1)
    assert a and b and not a & b and len(a | b) == 4


def test_incomplete_or_foreign_dataset_is_a_clear_error(dataset_dir, tmp_path):
    with pytest.raises(JukeboxError, match="dataset.json is missing"):
        load_manifest(str(tmp_path))
    manifest = json.loads((dataset_dir / "out" / "dataset.json").read_text())
    bad = tmp_path / "v99"
    bad.mkdir()
    (bad / "dataset.json").write_text(json.dumps(manifest | {"schema_version": 99}))
    with pytest.raises(ValueError, match="schema version 99, this jukebox-tf reads version 1"):
        load_manifest(str(bad))
    (bad / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(JukeboxError, match="shard\\(s\\) missing: data-00000-of-00002"):
        load_manifest(str(bad))

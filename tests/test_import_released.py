"""Importing OpenAI's checkpoint files: small files in exactly its container and key layout,
written by the original code itself (tests/fixtures/released, make_fixtures.py), import to the
same runs as the Hugging Face saves of the same weights, and the imported models compute what
the original computed on the same inputs. Bad input fails with a clear error, writing nothing.
"""

import json
import os
import shutil
import struct

import numpy as np
import pytest

from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior.task import load_prior_run
from jukebox_tf.released.importer import import_weights
from jukebox_tf.released.tensor_files import TensorFileError
from jukebox_tf.vqvae.task import load_vqvae_run

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "released")
LAYOUTS = {  # fixture name -> (--model, the run it writes)
    "vqvae": ("vqvae", "vqvae"), "prior_level_0": ("upsamplers", "upsampler_0"),
    "prior_level_1": ("upsamplers", "upsampler_1"), "5b_prior_level_2": ("5b", "prior_5b"),
    "5b_lyrics_prior_level_2": ("5b_lyrics", "prior_5b_lyrics"),
    "1b_lyrics_prior_level_2": ("1b_lyrics", "prior_1b_lyrics")}


def quiet(message):
    pass


def openai_file(name):
    return os.path.join(FIXTURES, "openai", f"{name}.pth.tar")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (run imported from OpenAI's file, run imported from the HF save)."""
    out = tmp_path_factory.mktemp("released")
    result = {}
    for name, (model, run) in LAYOUTS.items():
        a = import_weights("openai", model, [openai_file(name)], str(out / "openai" / name),
                           progress=quiet)
        b = import_weights("hf", model, [os.path.join(FIXTURES, "hf", name)],
                           str(out / "hf" / name), progress=quiet)
        assert [os.path.basename(p) for p in a + b] == [run, run]
        result[name] = (a[0], b[0])
    return result


def load(run):
    return load_vqvae_run(run) if run.endswith("vqvae") else load_prior_run(run)


@pytest.mark.parametrize("name", LAYOUTS)
def test_openai_and_hf_files_of_the_same_weights_import_identically(runs, name):
    a, b = (load(run) for run in runs[name])
    assert a.config == b.config
    for x, y in zip(a.variables, b.variables):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


def test_the_vqvae_computes_what_the_original_computed(runs):
    ref = np.load(os.path.join(FIXTURES, "reference_vqvae.npz"))
    model = load(runs["vqvae"][0])
    codes = model.encode(ref["audio"])
    for level in range(3):
        np.testing.assert_allclose(model.encoders[level](ref["audio"]).numpy(),
                                   ref[f"encoded_{level}"].transpose(0, 2, 1), atol=1e-5)
        np.testing.assert_array_equal(codes[level].numpy(), ref[f"codes_{level}"])
        np.testing.assert_allclose(model.decode(ref[f"codes_{level}"], level).numpy(),
                                   ref[f"decoded_{level}"], atol=1e-4)


@pytest.mark.parametrize("name", [n for n in LAYOUTS if n != "vqvae"])
def test_the_priors_compute_what_the_original_computed(runs, name):
    ref = np.load(os.path.join(FIXTURES, f"reference_{name}.npz"))
    prior = load(runs[name][0])
    config = prior.config
    labels = ref["labels"].astype(np.int32)
    inputs = {"codes": ref["music_tokens"], "labels": labels[:, :config.label_width]}
    if config.is_upsampler:
        inputs["upper_codes"] = ref["upper_codes"]
    if config.lyrics:  # the original's label rows carry the lyric window after the genres
        inputs["lyrics"] = labels[:, config.label_width:]
    out = prior(inputs)
    # The 1B model's reference covers its whole sequence (lyric prefix, then music) and
    # vocabulary (characters, then codes).
    logits = out.get("sequence_logits", out["logits"]).numpy()
    np.testing.assert_allclose(logits[..., ref["logits_columns"]], ref["logits"], atol=1e-4)
    lse = np.log(np.exp(logits.astype(np.float64)).sum(-1))
    np.testing.assert_allclose(lse, ref["logits_logsumexp"], atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(-1), ref["logits_argmax"])


def test_the_5b_files_float16_weights_become_float32(runs):
    from jukebox_tf.released.tensor_files import load_torch_file

    state = load_torch_file(openai_file("5b_prior_level_2"))["model"]
    key = "prior.transformer._attn_mods.0.attn.c_attn.w"
    assert state[key].dtype == np.float16
    prior = load(runs["5b_prior_level_2"][0])
    [kernel] = [v for v in prior.variables if v.path.endswith("block_0/attn/c_attn/kernel")]
    assert kernel.dtype == "float32"
    np.testing.assert_array_equal(kernel.numpy(), state[key].load().astype(np.float32))


def test_a_whole_jukebox_model_save_imports_its_parts(runs, tmp_path):
    whole = os.path.join(FIXTURES, "hf", "jukebox_model")
    [vqvae] = import_weights("hf", "vqvae", [whole], str(tmp_path / "a"), progress=quiet)
    ups = import_weights("hf", "upsamplers", [whole], str(tmp_path / "b"), progress=quiet)
    assert [os.path.basename(p) for p in ups] == ["upsampler_0", "upsampler_1"]
    for ours, theirs in [(vqvae, runs["vqvae"][0]), (ups[0], runs["prior_level_0"][0]),
                         (ups[1], runs["prior_level_1"][0])]:
        for x, y in zip(load(ours).variables, load(theirs).variables):
            np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)
    # JukeboxModel gives every prior the top prior's genre slots (1 for the 1b lyrics model).
    assert load(ups[0]).config.max_genre_words == 1


def test_a_whole_1b_jukebox_model_save_imports_as_a_hierarchy(tmp_path):
    whole = os.path.join(FIXTURES, "hf", "jukebox_model")
    runs = import_weights("hf", "1b_lyrics", [whole], str(tmp_path / "out"), progress=quiet)
    assert [os.path.basename(p) for p in runs] == ["vqvae", "upsampler_0", "upsampler_1",
                                                  "prior_1b_lyrics"]
    prior = load(runs[-1])
    config = prior.config
    assert config.single_enc_dec and config.n_vocab == 79 and config.max_genre_words == 1
    codes = np.zeros([1, config.n_ctx], np.int32)
    labels = np.zeros([1, config.label_width], np.int32)
    lyrics = np.ones([1, config.n_lyric_tokens], np.int32)
    out = prior({"codes": codes, "labels": labels, "lyrics": lyrics})
    assert out["logits"].shape == (1, config.n_ctx, config.l_bins)
    assert out["sequence_logits"].shape == (1, config.seq_ctx, config.token_bins)
    assert np.isfinite(out["loss"].numpy())


def write_safetensors(path, tensors):
    header, data = {}, b""
    for name, array in tensors.items():
        array = np.ascontiguousarray(array, np.float32)
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [len(data), len(data) + array.nbytes]}
        data += array.tobytes()
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def hf_copy(tmp_path, name, change):
    """The HF save of fixture `name` as safetensors, its weights passed through `change`."""
    from jukebox_tf.released.tensor_files import load_torch_file

    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(os.path.join(FIXTURES, "hf", name, "config.json"), folder)
    state = load_torch_file(os.path.join(FIXTURES, "hf", name, "pytorch_model.bin"))
    tensors = {k: v.load().astype(np.float32) for k, v in state.items()}
    write_safetensors(folder / "model.safetensors", change(tensors))
    return str(folder)


def drop_and_add(tensors):
    tensors = dict(tensors)
    del tensors["prior.transformer._attn_mods.1.mlp.c_fc.weight"]
    tensors["prior.extra.weight"] = np.zeros(3, np.float32)
    return tensors


def reshaped(tensors):
    tensors = dict(tensors)
    key = "prior.transformer._attn_mods.2.attn.c_proj.weight"
    tensors[key] = np.zeros((tensors[key].shape[0] + 1, tensors[key].shape[1]), np.float32)
    return tensors


@pytest.mark.parametrize("case,message", [
    ("not a checkpoint", r"not a PyTorch checkpoint|not a torch|not .*checkpoint"),
    ("truncated", r"truncated"),
    ("another model", r"a 5b top-level prior, not --model 5b_lyrics"),
    ("missing and unexpected", r"1 weight\(s\) the model needs are missing: "
                               r"prior.transformer._attn_mods.1.mlp.c_fc.weight; 1 unexpected: "
                               r"prior.extra.weight"),
    ("shape", r"prior.transformer._attn_mods.2.attn.c_proj.weight has shape \(9, 32\), the "
              r"model built from the checkpoint's configuration needs \(8, 32\)"),
    ("vqvae for a prior", r"--model 5b needs the top-level prior; the checkpoint\(s\) hold "
                          r"the VQ-VAE"),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, case, message):
    fmt, model, source = "openai", "5b", openai_file("5b_prior_level_2")
    if case == "not a checkpoint":
        source = str(tmp_path / "prior_level_2.pth.tar")
        (tmp_path / "prior_level_2.pth.tar").write_bytes(os.urandom(4096))
    elif case == "truncated":
        source = str(tmp_path / "cut.pth.tar")
        data = open(openai_file("5b_prior_level_2"), "rb").read()
        (tmp_path / "cut.pth.tar").write_bytes(data[:len(data) * 2 // 3])
    elif case == "another model":
        model = "5b_lyrics"
    elif case == "missing and unexpected":
        fmt, source = "hf", hf_copy(tmp_path, "5b_prior_level_2", drop_and_add)
    elif case == "shape":
        fmt, source = "hf", hf_copy(tmp_path, "5b_prior_level_2", reshaped)
    elif case == "vqvae for a prior":
        source = openai_file("vqvae")
    with pytest.raises((JukeboxError, TensorFileError), match=message) as e:
        import_weights(fmt, model, [source], str(tmp_path / "out"), progress=quiet)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


VOCAB = os.path.join(FIXTURES, "vocab")


@pytest.mark.parametrize("files", [["v2_artist_ids.txt", "v2_genre_ids.txt"],
                                   ["artists.json", "genres.json", "lyrics.json"]])
def test_the_original_names_find_the_original_ids(tmp_path, files):
    from jukebox_tf.sampling.runs import plan_hierarchy

    runs = import_weights("openai", "5b", [openai_file("5b_prior_level_2"), openai_file(
        "vqvae")], str(tmp_path), vocab_files=[os.path.join(VOCAB, f) for f in files],
        progress=quiet)
    assert [os.path.basename(r) for r in runs] == ["vqvae", "prior_5b"]
    plan = plan_hierarchy(None, runs[1])  # the VQ-VAE run it was imported beside
    assert plan.vqvae_run == runs[0] and plan.vocab.scheme == "v2"
    # The original's v2 names: lower case, runs of other characters made one '_'.
    assert plan.label_ids("June & the Moths", ["Hip Hop", "soul"]) == (5, [4, 5, 6], [])
    assert plan.label_ids("Ana Luísa Prado", []) == (12, [0], [])
    assert plan.label_ids("various", ["rock"])[:2] == (0, [2])  # an alias of id 0
    artist, genres, warnings = plan.label_ids("Nobody Anyone Knows", ["polka"])
    assert (artist, genres) == (0, [0]) and len(warnings) == 2
    assert "unknown artist 'Nobody Anyone Knows': using id 0 (unknown); known artists: " \
           "'the_tin_lanterns', 'mara_okafor'" in warnings[0]
    task = json.loads(open(os.path.join(runs[1], "task.json")).read())
    assert task["codes"]["artists"][:3] == ["unknown", "the_tin_lanterns", "mara_okafor"]
    assert task["codes"]["label_aliases"]["artists"] == {"various": 0, "": 0}


def test_a_vocabulary_of_another_model_is_refused(tmp_path):
    big = tmp_path / "v2_artist_ids.txt"
    big.write_text("unknown;0\nsomeone;500\n")
    with pytest.raises(JukeboxError, match=r"artist ids up to 500, but the model's artist "
                                           r"embedding has 24 rows"):
        import_weights("openai", "5b", [openai_file("5b_prior_level_2")], str(tmp_path / "o"),
                       vocab_files=[str(big), os.path.join(VOCAB, "v2_genre_ids.txt")],
                       progress=quiet)
    with pytest.raises(JukeboxError, match=r"no v2 artist vocabulary given"):
        import_weights("openai", "5b", [openai_file("5b_prior_level_2")], str(tmp_path / "o"),
                       vocab_files=[os.path.join(VOCAB, "v3_artist_ids.txt"),
                                    os.path.join(VOCAB, "v3_genre_ids.txt")], progress=quiet)
    assert not (tmp_path / "o").exists()


def test_each_level_of_the_1b_hierarchy_finds_its_own_ids(tmp_path):
    """The 1B lyrics model's top prior names v3 ids, its upsamplers v2 ids: one name becomes
    each level's id, in the library, the sample command's plan and the exported graph."""
    import tensorflow as tf

    from jukebox_tf.export.module import ExportInfo, JukeboxModule
    from jukebox_tf.sampling.runs import load_weights, plan_hierarchy

    files = ["v2_artist_ids.txt", "v2_genre_ids.txt", "v3_artist_ids.txt", "v3_genre_ids.txt"]
    runs = import_weights("hf", "1b_lyrics", [os.path.join(FIXTURES, "hf", "jukebox_model")],
                          str(tmp_path), vocab_files=[os.path.join(VOCAB, f) for f in files],
                          progress=quiet)
    plan = plan_hierarchy(runs[0], runs[3], runs[1:3])
    assert plan.vocab.scheme == "v3" and set(plan.level_vocabs) == {0, 1}
    assert plan.warnings == []
    # v3: 'june & the moths' 6, the genre 'hip hop' 7; v2: june_the_moths 5, the words 'hip'
    # 4 and 'hop' 5 (of which this model's one genre slot keeps the first).
    expected = ({0: 5, 1: 5, 2: 6}, {0: [4, 5], 1: [4, 5], 2: [7]}, [])
    assert plan.level_label_ids("June & the Moths", ["Hip Hop"]) == expected
    artists, _, warnings = plan.level_label_ids("Zoë Marchetti")  # only in v3
    assert artists == {0: 0, 1: 0, 2: 5} and len(warnings) == 1

    hierarchy = load_weights(plan)
    module = JukeboxModule(hierarchy.vqvae, hierarchy.priors, ExportInfo(
        version=1, vocab=plan.vocab, level_vocabs=tuple(plan.level_vocabs.items())))
    for level in range(3):
        rows = module._labels(tf.constant(["June & the Moths"]), tf.constant(["Hip Hop"]),
                              tf.constant([1000]), tf.constant([0]), level).numpy()
        assert rows[0, 3:].tolist() == [expected[0][level], expected[1][level][0]]

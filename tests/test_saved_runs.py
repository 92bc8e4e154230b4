"""Runs and a `.keras` file saved by an earlier layout of the package still load and compute
the same outputs: checkpoints are keyed by attribute paths and Keras objects by their
registered names ("jukebox_tf>Conv1D"), neither by the module a class lives in. The fixtures
were written before the shared layers moved to jukebox_tf/layers (make_fixtures.py)."""

import os

import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "saved_before_layers")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURES, "expected.npz")) as f:
        return dict(f)


def test_a_vqvae_run_saved_before_the_move_computes_as_it_did(expected):
    from jukebox_tf.vqvae.task import load_vqvae_run

    model = load_vqvae_run(os.path.join(FIXTURES, "vqvae"))
    out = model(expected["vqvae/audio"])
    for level in range(model.config.levels):
        np.testing.assert_array_equal(out["codes"][level], expected[f"vqvae/codes_l{level}"])
        np.testing.assert_allclose(out["reconstructions"][level],
                                   expected[f"vqvae/reconstruction_l{level}"], atol=1e-5)


@pytest.mark.parametrize("name", ["top", "up1"])
def test_a_prior_run_saved_before_the_move_computes_as_it_did(name, expected):
    from jukebox_tf.prior.task import load_prior_run

    model = load_prior_run(os.path.join(FIXTURES, name))
    prefix = f"{name}/"
    batch = {k[len(prefix):]: v for k, v in expected.items()
             if k.startswith(prefix) and k != f"{name}/logits"}
    assert (name == "up1") == ("upper_codes" in batch)  # the upsampler's conditioner is read
    np.testing.assert_allclose(model(batch)["logits"], expected[f"{name}/logits"], atol=1e-4)


def test_a_keras_file_of_the_moved_layers_loads_by_registered_names():
    """Its config names the classes' old modules (jukebox_tf.vqvae.conv, ...); the registered
    names find them where they are now."""
    import json
    import zipfile

    import keras

    # Importing the library registers the classes, as a user's import does.
    import jukebox_tf.layers.conv_blocks  # noqa: F401
    import jukebox_tf.layers.linear  # noqa: F401

    path = os.path.join(FIXTURES, "layers.keras")
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    modules = {layer["module"] for layer in config["config"]["layers"]}
    assert {"jukebox_tf.vqvae.conv", "jukebox_tf.prior.factorized_attention"} <= modules
    model = keras.saving.load_model(path, compile=False)
    assert [type(layer).__module__ for layer in model.layers] == [
        "jukebox_tf.layers.conv", "jukebox_tf.layers.resnet", "jukebox_tf.layers.conv_blocks",
        "jukebox_tf.layers.linear", "jukebox_tf.layers.linear"]
    with np.load(os.path.join(FIXTURES, "layers_expected.npz")) as f:
        np.testing.assert_allclose(model(f["input"]), f["output"], atol=1e-5)

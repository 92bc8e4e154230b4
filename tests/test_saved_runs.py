"""Runs and `.keras` files saved by an earlier layout of the package still load and compute
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


def check_vqvae(model, expected):
    out = model(expected["vqvae/audio"])
    for level in range(model.config.levels):
        np.testing.assert_array_equal(out["codes"][level], expected[f"vqvae/codes_l{level}"])
        np.testing.assert_allclose(out["reconstructions"][level],
                                   expected[f"vqvae/reconstruction_l{level}"], atol=1e-5)


def test_a_vqvae_run_saved_before_the_move_computes_as_it_did(expected):
    from jukebox_tf.vqvae.task import load_vqvae_run

    check_vqvae(load_vqvae_run(os.path.join(FIXTURES, "vqvae")), expected)


@pytest.mark.parametrize("name", ["top", "up1"])
def test_a_prior_run_saved_before_the_move_computes_as_it_did(name, expected):
    from jukebox_tf.prior.task import load_prior_run

    model = load_prior_run(os.path.join(FIXTURES, name))
    prefix = f"{name}/"
    batch = {k[len(prefix):]: v for k, v in expected.items()
             if k.startswith(prefix) and k != f"{name}/logits"}
    assert (name == "up1") == ("upper_codes" in batch)  # the upsampler's conditioner is read
    np.testing.assert_allclose(model(batch)["logits"], expected[f"{name}/logits"], atol=1e-4)


def test_a_keras_file_saved_before_the_move_loads_by_registered_names(expected):
    import keras

    import jukebox_tf.vqvae.vqvae  # noqa: F401 (registers the classes, as a user's import does)

    model = keras.saving.load_model(os.path.join(FIXTURES, "vqvae.keras"), compile=False)
    assert type(model).__name__ == "VQVAE"
    check_vqvae(model, expected)

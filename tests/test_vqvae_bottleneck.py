"""The EMA vector quantiser against a numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from jukebox_tf.vqvae.bottleneck import BottleneckBlock, global_candidates

K, D = 16, 4


def block(mu=0.9, threshold=1.0):
    b = BottleneckBlock(K, D, mu=mu, threshold=threshold, seed=7)
    b.build((None, None, D))
    return b


def set_state(b, k, k_sum, k_elem):
    b.k.assign(k)
    b.k_sum.assign(k_sum)
    b.k_elem.assign(k_elem)
    b.initialized.assign(1)


def test_nearest_code_matches_brute_force():
    rng = np.random.RandomState(0)
    b = block()
    k = rng.randn(K, D).astype(np.float32)
    set_state(b, k, k, np.ones(K, np.float32))
    x = rng.randn(500, D).astype(np.float32)
    codes, fit = b.quantise(tf.constant(x))
    dist = ((x[:, None, :] - k[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(codes.numpy(), dist.argmin(1))
    np.testing.assert_allclose(fit.numpy(), dist.min(1).mean(), rtol=1e-5)
    np.testing.assert_array_equal(b.dequantise(codes).numpy(), k[dist.argmin(1)])
    # The scores it ranks by: |x - E_k|^2 = |x|^2 - 2 score_k.
    np.testing.assert_allclose(b.scores(tf.constant(x)).numpy(),
                               ((x * x).sum(1)[:, None] - dist) / 2, rtol=1e-4, atol=1e-4)


def test_ema_update_and_restart_rule_match_numpy():
    rng = np.random.RandomState(1)
    mu, b = 0.9, block(mu=0.9)
    k = rng.randn(K, D).astype(np.float32)
    k_sum = k * 3.0
    k_elem = np.full(K, 3.0, np.float32)
    k_elem[:4] = 0.5  # these stay below the threshold unless the batch revives them
    set_state(b, k, k_sum, k_elem)
    x = (k[rng.randint(4, K, 300)] + 0.1 * rng.randn(300, D)).astype(np.float32)
    x[:2] = k[0] + 0.01  # code 0 gets two vectors: 0.9 * 0.5 + 0.1 * 2 = 0.65, still dead
    updates_before = int(b.updates.numpy())
    candidates = global_candidates(tf.constant(x), K, tf.constant([7, updates_before]))

    codes, fit, metrics = b.update_codebook(tf.constant(x))

    dist = ((x[:, None, :] - k[None, :, :]) ** 2).sum(-1)
    ref_codes = dist.argmin(1)
    np.testing.assert_array_equal(codes.numpy(), ref_codes)
    onehot = np.eye(K, dtype=np.float32)[ref_codes]
    ref_sum = mu * k_sum + (1 - mu) * onehot.T @ x
    ref_elem = mu * k_elem + (1 - mu) * onehot.sum(0)
    alive = ref_elem >= 1.0
    ref_k = np.where(alive[:, None], ref_sum / ref_elem[:, None], candidates.numpy())
    np.testing.assert_allclose(b.k_sum.numpy(), ref_sum, rtol=1e-5)
    np.testing.assert_allclose(b.k_elem.numpy(), ref_elem, rtol=1e-6)
    np.testing.assert_allclose(b.k.numpy(), ref_k, rtol=1e-5, atol=1e-6)
    assert not alive[:4].any() and alive[4:].all()
    assert metrics["alive"].numpy() == alive.sum()
    np.testing.assert_array_equal(metrics["batch_count"].numpy(), onehot.sum(0))
    assert int(b.updates.numpy()) == updates_before + 1


def test_candidates_are_batch_rows_plus_small_noise():
    rng = np.random.RandomState(2)
    x = rng.randn(50, D).astype(np.float32)
    c = global_candidates(tf.constant(x), K, tf.constant([1, 2])).numpy()
    nearest = ((c[:, None, :] - x[None]) ** 2).sum(-1).min(1)
    assert np.sqrt(nearest).max() < 0.01 * 6 / np.sqrt(D) * np.sqrt(D)
    again = global_candidates(tf.constant(x), K, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(c, again)  # stateless: same seed, same rows
    other = global_candidates(tf.constant(x), K, tf.constant([1, 3])).numpy()
    assert not np.allclose(c, other)


def test_first_training_batch_initialises_the_codebook():
    rng = np.random.RandomState(3)
    mu, b = 0.9, block(mu=0.9)
    x = rng.randn(2, 40, D).astype(np.float32) * 5.0
    flat = x.reshape(-1, D)
    assert int(b.initialized.numpy()) == 0
    candidates = global_candidates(tf.constant(flat), K, tf.constant([7, 0])).numpy()
    out = b(tf.constant(x), training=True)
    assert int(b.initialized.numpy()) == 1
    # Reference: the codebook starts as the candidates (rows of the batch), with counts of 1,
    # then takes its first EMA step with the same candidates for restarts.
    codes = ((flat[:, None] - candidates[None]) ** 2).sum(-1).argmin(1)
    onehot = np.eye(K, dtype=np.float32)[codes]
    k_sum = mu * candidates + (1 - mu) * onehot.T @ flat
    k_elem = mu + (1 - mu) * onehot.sum(0)
    ref = np.where((k_elem >= 1)[:, None], k_sum / k_elem[:, None], candidates)
    np.testing.assert_array_equal(out["codes"].numpy().reshape(-1), codes)
    np.testing.assert_allclose(b.k.numpy(), ref, rtol=1e-5, atol=1e-5)
    assert out["codes"].shape == (2, 40) and out["codes"].dtype == tf.int32


def test_straight_through_gradient_and_commit_loss():
    rng = np.random.RandomState(4)
    b = block()
    k = rng.randn(K, D).astype(np.float32)
    set_state(b, k, k, np.ones(K, np.float32))
    x = tf.constant(rng.randn(3, 10, D).astype(np.float32))
    w = tf.constant(rng.randn(3, 10, D).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = b(x, training=False)
        y = tf.reduce_sum(out["quantized"] * w)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), w.numpy(), rtol=1e-6)
    q = k[out["codes"].numpy()]
    np.testing.assert_allclose(out["quantized"].numpy(), q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["commit_loss"].numpy(), ((q - x.numpy()) ** 2).mean(),
                               rtol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(x)
        commit = b(x, training=False)["commit_loss"]
    np.testing.assert_allclose(tape.gradient(commit, x).numpy(),
                               2 * (x.numpy() - q) / x.numpy().size, rtol=1e-4, atol=1e-7)


def test_usage_entropy_and_perplexity():
    b = block()
    k = np.eye(K, D, dtype=np.float32) * 10
    set_state(b, k, k, np.ones(K, np.float32))
    x = np.stack([k[0], k[0], k[1], k[2]])[None]  # codes 0, 0, 1, 2
    m = b(tf.constant(x), training=False)["metrics"]
    probs = np.array([0.5, 0.25, 0.25])
    entropy = -(probs * np.log2(probs)).sum()
    assert m["usage"].numpy() == 3
    np.testing.assert_allclose(m["entropy_bits"].numpy(), entropy, rtol=1e-6)
    np.testing.assert_allclose(m["perplexity"].numpy(), 2 ** entropy, rtol=1e-5)


MIRRORED = r"""
import os, sys, numpy as np, tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)
from jukebox_tf.vqvae.bottleneck import BottleneckBlock
rng = np.random.RandomState(0)
batches = [rng.randn(4, 30, 4).astype(np.float32) for _ in range(3)]

def run(strategy, split):
    with strategy.scope():
        b = BottleneckBlock(16, 4, mu=0.9, seed=3)
        b.build((None, None, 4))
    @tf.function
    def step(x):
        return b(x, training=True)["codes"]
    for batch in batches:
        if split:
            halves = strategy.experimental_distribute_values_from_function(
                lambda ctx: batch[2 * ctx.replica_id_in_sync_group:][:2])
            strategy.run(step, args=(halves,))
        else:
            step(tf.constant(batch))
    return [np.stack([v.numpy() for v in strategy.experimental_local_results(var)])
            for var in (b.k.value, b.k_sum.value, b.k_elem.value)]

mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), True)
single = run(tf.distribute.get_strategy(), False)
for m, s in zip(mirrored, single):
    assert m.shape[0] == 2
    np.testing.assert_array_equal(m[0], m[1])
    np.testing.assert_allclose(m[0], s[0], rtol=1e-5, atol=1e-6)
print("OK")
"""


@pytest.mark.slow
def test_two_replicas_keep_identical_codebooks_equal_to_one_replica():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]

"""What the signatures refuse, checked in graph: assert ops that fail a request with
INVALID_ARGUMENT and a message naming the input (export/README.md, "Signatures"). Each
function returns the inputs it checks, available only once its checks have passed, so that a
bad request fails with its message rather than with whatever the unchecked value would break.
"""

from __future__ import annotations

import tensorflow as tf

from jukebox_tf.export.graph_sampling import GraphSettings


def after(checks, tensor) -> tf.Tensor:
    """`tensor`, available only once the `checks` (assert ops) have passed."""
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(tensor)


def same_batch(first: str, tensors: dict) -> dict:
    """`tensors`, available once each is checked to have as many rows as
    tensors[first] (named in the message)."""
    batch = tf.shape(tensors[first])[0]
    checks = [tf.debugging.assert_equal(
        tf.shape(tensor)[0], batch,
        message=f"{name} must have one row per sample (as many as {first})")
        for name, tensor in tensors.items() if name != first]
    return {name: after(checks, t) for name, t in tensors.items()}


def checked_settings(rows: dict) -> GraphSettings:
    """The per-row settings of a signature's inputs, available once checked."""
    temperature, top_k, top_p = rows["temperature"], rows["top_k"], rows["top_p"]
    checks = [
        tf.debugging.assert_greater_equal(temperature, 0.0,
                                          message="temperature must be >= 0 (0 = greedy)"),
        tf.debugging.assert_greater_equal(top_k, 0, message="top_k must be >= 0 (0 = off)"),
        tf.debugging.assert_greater_equal(top_p, 0.0, message="top_p must be in [0, 1]"),
        tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in [0, 1]")]
    return GraphSettings(*(after(checks, t) for t in (temperature, top_k, top_p, rows["seed"])))


def checked_codes(codes, name: str, codebook_size: int) -> tf.Tensor:
    message = f"{name}: codes must be in [0, {codebook_size}) (the codebook)"
    return after([tf.debugging.assert_non_negative(codes, message=message),
                  tf.debugging.assert_less(codes, codebook_size, message=message)], codes)


def checked_encode_length(audio, sample_rate, config) -> tf.Tensor:
    """encode: the audio's length cut to whole top-level codes, once the request's
    sample_rate is the VQ-VAE's (`config`) and that length holds at least one code."""
    top_hop = config.hop_lengths[-1]
    length = tf.shape(audio)[1] // top_hop * top_hop
    return after([
        tf.debugging.assert_equal(
            sample_rate, config.sample_rate,
            message=f"encode: sample_rate must be {config.sample_rate} (the rate of the "
                    f"VQ-VAE, in Hz): resample the audio first"),
        tf.debugging.assert_positive(
            length, message=f"encode: audio needs at least {top_hop} samples (one "
                            f"top-level code)")], length)


def checked_decode_level(level, levels: int) -> tf.Tensor:
    message = f"decode: level must be in [0, {levels})"
    return after([tf.debugging.assert_non_negative(level, message=message),
                  tf.debugging.assert_less(level, levels, message=message)], level)


def checked_n_tokens(n_tokens) -> tf.Tensor:
    return after([tf.debugging.assert_positive(
        n_tokens, message="sample: n_tokens must be >= 1")], n_tokens)


def checked_prime(prime, batch, n_tokens, codebook_size: int) -> tf.Tensor:
    """sample: prime int32 [batch, P] (P <= each row's n_tokens) of codes in the codebook."""
    prime = after([
        tf.debugging.assert_equal(tf.shape(prime)[0], batch, message="prime must have "
                                  "one row per sample (as many as artist), or be empty"),
        tf.debugging.assert_less_equal(tf.shape(prime)[1], n_tokens,
                                       message="sample: prime is longer than n_tokens")],
        prime)
    return checked_codes(prime, "prime", codebook_size)


def checked_upsampler_level(level, levels: list[int], signature: str) -> tf.Tensor:
    """level int32 [B], available once each is one of `levels` (those with an upsampler)."""
    return after([tf.debugging.assert_equal(
        tf.reduce_all(tf.reduce_any(tf.equal(level[:, None], levels), axis=1)),
        True, message=f"{signature}: level must be one of {levels} (the levels with an "
                      f"upsampler)")], level)


def checked_total_tokens(total_tokens, codes, prime, ratio) -> tf.Tensor:
    """upsample_part: total_tokens int32 [B], the level's whole length, once it fits the
    level above's `codes` and the `prime` by each row's hop ratio `ratio`."""
    return after([
        tf.debugging.assert_positive(total_tokens, message=(
            "upsample_part: total_tokens must be >= 1")),
        tf.debugging.assert_equal(total_tokens % ratio, 0, message=(
            "upsample_part: total_tokens (the level's whole length) must be a multiple of "
            "the hop ratio: the whole length of the level above times it")),
        tf.debugging.assert_less_equal(tf.shape(codes)[1] * ratio, total_tokens, message=(
            "upsample_part: codes is longer than total_tokens / hop ratio")),
        tf.debugging.assert_less_equal(tf.shape(prime)[1], total_tokens,
                                       message="upsample_part: prime is longer than "
                                               "total_tokens")], total_tokens)


def checked_seconds(seconds) -> tf.Tensor:
    return after([tf.debugging.assert_positive(
        seconds, message="generate: seconds must be > 0")], seconds)

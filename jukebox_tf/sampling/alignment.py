"""The lyric alignment `sample` shows: how much each stretch of the top level's music attends
to each lyric character, read from the layer and head the original reads
(config.lyric_alignment: 63 / 0 in the 1B lyrics model, 68 / 2 in the 5B one).

The windows are the sampler's (windowed.window_starts at the level's hop fraction). Each
window's weights [n_ctx, n_lyric_tokens] are placed at its music positions and at the lyric
characters its window holds; where windows overlap the earliest window's weights are kept, as
the original's get_alignment does by walking them backwards.

    weights = lyric_alignment(prior, codes, hop_lengths, labels=labels, lyrics=(tokens, lengths))
    # [B] of float32 [T, L_b]: music token x lyric character of each sample
"""

from __future__ import annotations

import io
import json
from typing import Sequence

import numpy as np

from jukebox_tf.prior.lyrics import lyric_window_tf
from jukebox_tf.prior.labels import LENGTH, OFFSET, TOTAL_LENGTH
from jukebox_tf.sampling import prior_api
from jukebox_tf.sampling.windowed import HOP_FRACTIONS, window_inputs, window_starts

MAX_ROWS = 1024  # time rows kept in the JSON (the original's picture is 1024 wide)


def lyric_alignment(prior, codes, hop_lengths: Sequence[int], *, labels, lyrics,
                    hop_fraction: float | None = None) -> list[np.ndarray]:
    """codes int [B, T] of the prior's level; labels int [B, 4 + G] base rows and lyrics
    (tokens int [B, L], lengths int [B]) as sample_level's -> per sample float32
    [T, lengths[b]]."""
    level = prior_api.prior_level(prior)
    ctx = prior_api.n_ctx(prior)
    hop_fraction = HOP_FRACTIONS[min(level, 2)] if hop_fraction is None else hop_fraction
    codes = np.asarray(codes, np.int32)
    batch, total = codes.shape
    tokens, lengths = (np.asarray(a, np.int32) for a in lyrics)
    # A level shorter than a context is read as one zero-padded window (the original's too).
    padded = np.pad(codes, [(0, 0), (0, max(ctx - total, 0))])
    out = np.zeros([batch, padded.shape[1], tokens.shape[1] + 1], np.float32)
    rows = np.arange(batch)[:, None, None]
    for start in reversed(window_starts(padded.shape[1], ctx, hop_fraction)):
        inputs = window_inputs(prior, start, int(hop_lengths[level]), labels, (tokens, lengths),
                               None, None)
        y = inputs["labels"].numpy()
        indices = lyric_window_tf(tokens, y[:, TOTAL_LENGTH], y[:, OFFSET], y[:, LENGTH],
                                  prior_api.n_lyric_tokens(prior), lengths=lengths)[1].numpy()
        inputs["codes"] = padded[:, start:start + ctx]
        weights = prior.lyric_attention(inputs).numpy()
        # Padding characters (index -1) land in the extra last column.
        columns = np.where(indices < 0, tokens.shape[1], indices)[:, None, :]
        out[rows, np.arange(start, start + ctx)[None, :, None], columns] = weights
    return [out[b, :total, :lengths[b]] for b in range(batch)]


def _pooled(weights: np.ndarray, rows: int) -> tuple[np.ndarray, int]:
    """(weights [T, L] averaged over groups of `group` time rows, so at most `rows` remain,
    group)."""
    group = max(1, -(-len(weights) // rows))
    pad = -len(weights) % group
    padded = np.pad(weights, [(0, pad), (0, 0)], mode="edge") if len(weights) else weights
    return padded.reshape(-1, group, weights.shape[1]).mean(axis=1), group


def alignment_json(weights: Sequence[np.ndarray], texts: Sequence[str], seconds_per_token: float,
                   layer: int, head: int) -> str:
    """The alignments as JSON: per sample the characters, the weights (0-255, time rows pooled
    to at most MAX_ROWS) and each row's most attended character."""
    samples = []
    for w, text in zip(weights, texts):
        pooled, group = _pooled(w, MAX_ROWS)
        scale = float(pooled.max()) if pooled.size else 0.0
        levels = np.round(pooled / scale * 255) if scale > 0 else np.zeros_like(pooled)
        samples.append({
            "characters": text, "seconds_per_row": seconds_per_token * group,
            "weights_uint8": levels.astype(np.uint8).tolist(), "weights_max": scale,
            "peak_character": (pooled.argmax(axis=1).tolist() if pooled.shape[1] else [])})
    return json.dumps({"layer": layer, "head": head, "samples": samples}, indent=None)


def render_alignment_png(weights: Sequence[np.ndarray], texts: Sequence[str],
                         seconds_per_token: float) -> bytes:
    """One panel per sample: time (seconds) across, lyric characters up; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(weights), 1, figsize=(10, 2.6 * len(weights)), squeeze=False,
                             layout="constrained")
    for i, (ax, w, text) in enumerate(zip(axes[:, 0], weights, texts)):
        pooled, group = _pooled(w, MAX_ROWS)
        seconds = len(w) * seconds_per_token
        ax.imshow(pooled.T, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, seconds, 0, max(w.shape[1], 1)), interpolation="nearest")
        snippet = text if len(text) <= 60 else text[:57] + "..."
        ax.set_title(f"sample {i}: {snippet!r}", fontsize=9)
        ax.set_ylabel("character")
    axes[-1, 0].set_xlabel("seconds")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()

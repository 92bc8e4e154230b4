"""Starting a prior from another run's weights (fine-tuning): what must agree, the labels,
freezing. `PriorTask.from_run` (task.py) puts them together.

Labels. The new dataset's artist and genre names are mapped onto the model's vocabulary
("map"): a name the model knows (by its naming scheme, label_vocab.py) keeps its id and its
embedding row; a new name gets a new row, set to the mean of the model's rows. The mean, not a
fresh random row nor the unknown artist's row: the start embedding is the sum of the artist's
and the genres' rows, and the mean places a new name among the conditionings the model has
learned to read (a fresh row of the initial scale would be near zero, which no trained row
is), without giving it the meaning of any one of them. "replace" starts both tables afresh
with the dataset's own names (a dataset that shares nothing with the model).

Freezing. Named parts of the prior keep their starting values bit for bit:
    labels       the artist and genre embeddings
    conditioner  all conditioning: labels, timing, the level above (upsamplers), lyrics
    layers:N     the first N transformer blocks
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior.label_vocab import LabelVocab

LABEL_MODES = ("map", "replace")
FREEZABLE = ("labels", "conditioner", "layers:N")
# What the codes and the starting model must agree on (task.json "codes" / codes manifest).
_CODES_MUST_MATCH = ("levels", "l_bins", "hop_lengths", "sample_rate")


def check_codes_match(run_dir: str, run_codes: dict, codes_dir: str, manifest: dict) -> None:
    """Refuses codes made by a VQ-VAE other than the one the run's model reads."""
    for key in _CODES_MUST_MATCH:
        theirs, ours = run_codes.get(key), manifest.get(key)
        if theirs is not None and list(np.atleast_1d(theirs)) != list(np.atleast_1d(ours)):
            raise JukeboxError(
                f"{codes_dir}: {key} {ours}, but the model of {run_dir} reads codes with "
                f"{key} {theirs}: encode the music with the VQ-VAE that model was trained on"
                + (f" ({run_codes['vqvae_run']})" if run_codes.get("vqvae_run") else ""))


def fine_tune_vocab(run_codes: dict, manifest: dict, labels: str) -> LabelVocab:
    """The label names of the fine-tuned model: the run's extended by the dataset's ("map"),
    or the dataset's own ("replace")."""
    if labels not in LABEL_MODES:
        raise JukeboxError(f"labels {labels!r}: choose from {', '.join(LABEL_MODES)}")
    artists, genres = manifest["artists"], manifest["genres"]
    if labels == "replace":
        return LabelVocab(tuple(artists), tuple(genres))
    vocab, _, _ = LabelVocab.from_codes_info(run_codes).extended(artists, genres)
    return vocab


def relabel(data, vocab: LabelVocab, codes_dir: str | None, unknown_ok: bool = False):
    """`data` (a CodesData) with its artist and genre ids turned into `vocab`'s ids. Names
    `vocab` does not know are an error, or with `unknown_ok` (evaluating a model on music of
    other artists) id 0, unknown."""
    manifest = data.manifest
    extended, artist_ids, genre_ids = vocab.extended(manifest["artists"], manifest["genres"])
    missing = (list(extended.artists[len(vocab.artists):])
               + list(extended.genres[len(vocab.genres):]))
    if missing and not unknown_ok:
        raise JukeboxError(f"{codes_dir}: the names {', '.join(map(repr, missing[:5]))} are not "
                           f"in this run's label vocabulary (codes other than the run's?)")
    artist_ids = np.where(np.array(artist_ids) < len(vocab.artists), artist_ids, 0)
    genre_ids = np.where(np.array(genre_ids) < len(vocab.genres), genre_ids, 0)
    return dataclasses.replace(data, artist_ids=artist_ids[data.artist_ids],
                               genre_ids=[genre_ids[g].tolist() for g in data.genre_ids])


def mean_rows(rows: int):
    """fn(table [n, W]) -> table [rows, W]: the table, then new rows equal to its mean."""
    def grow(table: np.ndarray) -> np.ndarray:
        mean = table.mean(axis=0, keepdims=True, dtype=np.float64).astype(table.dtype)
        return np.concatenate([table, np.repeat(mean, rows - len(table), axis=0)])

    return grow


def check_freeze(names: Sequence[str], config) -> None:
    """Clear errors for part names that are not FREEZABLE or that this prior lacks."""
    for name in names:
        if name.startswith("layers:"):
            count = name.partition(":")[2]
            if not count.isdigit() or not 1 <= int(count) <= config.depth:
                raise JukeboxError(f"--freeze {name}: N must be a whole number from 1 to the "
                                   f"prior's {config.depth} layers")
        elif name not in FREEZABLE:
            raise JukeboxError(f"--freeze {name}: not a part of a prior; choose from "
                               f"{', '.join(FREEZABLE)}")
        elif name == "labels" and not config.labels:
            raise JukeboxError("--freeze labels: this prior has no label conditioning")


def frozen_variables(model, names: Sequence[str]) -> list:
    """The variables of the prior `model` (built) in the named parts."""
    labels, found = model.label_conditioner, []
    for name in names:
        if name == "labels":
            found += [labels.artist_emb, labels.genre_emb]
            continue
        parts = ((labels, model.upper_conditioner, model.lyric_encoder) if name == "conditioner"
                 else model.transformer.res_blocks[:int(name.partition(":")[2])])
        found += [v for part in parts if part is not None for v in part.trainable_variables]
    return found

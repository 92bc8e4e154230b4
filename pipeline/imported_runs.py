"""Runs that enter the pipeline from outside (released models, earlier runs), through TFX's
Importer in place of a Trainer: `--vqvae-from`, `--upsamplers-from`, `--top-prior-from`.

An imported artifact's URI is the run directory itself, where a Trainer's model is the run in
`<uri>/Format-Serving`: `run_dir_of` finds the run either way. The runs are read and checked
against each other when the pipeline is built (`check_imported_runs`), so a wrong folder is a
clear error before any component runs.
"""

from __future__ import annotations

import dataclasses
import os

from tfx import v1 as tfx
from tfx.utils import path_utils

from jukebox_tf import storage
from jukebox_tf.errors import JukeboxError


def run_dir_of(model_uri: str) -> str:
    """The run directory of a Model artifact: a Trainer's `<uri>/Format-Serving`, or the URI
    itself for an imported run."""
    serving = path_utils.serving_model_path(model_uri)
    return serving if storage.isdir(serving) else model_uri


def base_model_run(base_model: str) -> str:
    """The run directory of a Trainer's `fn_args.base_model` (TFX appends Format-Serving)."""
    return run_dir_of(os.path.dirname(base_model.rstrip("/")))


def importer(source_uri: str, node_id: str):
    """A TFX Importer node bringing the run at `source_uri` in as a Model artifact."""
    return tfx.dsl.Importer(source_uri=storage.abspath(source_uri),
                            artifact_type=tfx.types.standard_artifacts.Model,
                            reimport=False).with_id(node_id)


@dataclasses.dataclass(frozen=True)
class ImportedRuns:
    vqvae: str | None = None
    upsamplers: dict[int, str] = dataclasses.field(default_factory=dict)  # level -> run
    top_prior: str | None = None
    sample_rate: int | None = None  # the imported VQ-VAE's (the data are ingested at it)


def imported_runs(vqvae: str | None, upsamplers, top_prior: str | None, top_level: int,
                  check: bool = True) -> ImportedRuns:
    """The runs given; with `check` (wherever they can be read: not when compiling for a
    cluster), read and checked by `check_imported_runs`. Unchecked, the upsamplers are taken
    in the order of the levels, from the top: level top_level - 1 first."""
    if check:
        return check_imported_runs(vqvae, upsamplers, top_prior, top_level)
    if upsamplers and len(upsamplers) != top_level:
        raise JukeboxError(f"--upsamplers-from: give {top_level} runs (levels "
                           f"{top_level - 1} to 0), got {len(upsamplers)}")
    return ImportedRuns(vqvae, {top_level - 1 - i: run for i, run in enumerate(upsamplers or ())},
                        top_prior)


def check_imported_runs(vqvae: str | None, upsamplers, top_prior: str | None,
                        top_level: int) -> ImportedRuns:
    """Reads the given runs: each must be a run of its kind and level, and what the priors
    read (codebook size, hop lengths, sample rate) must be what the VQ-VAE makes."""
    from jukebox_tf.sampling.runs import check_against_vqvae, read_prior_info, read_vqvae_config

    vq = read_vqvae_config(vqvae, "--vqvae-from") if vqvae else None
    levels = {}
    for run in upsamplers or ():
        info = read_prior_info(run, "--upsamplers-from")
        if not 0 <= info.level < top_level or info.level in levels:
            raise JukeboxError(f"--upsamplers-from {run}: a run of level {info.level}; give "
                               f"one upsampler of each level below {top_level}")
        levels[info.level] = ("--upsamplers-from", info)
    if upsamplers and len(levels) != top_level:
        raise JukeboxError(f"--upsamplers-from: give the upsamplers of levels "
                           f"{list(range(top_level))}, got levels {sorted(levels)}")
    priors = list(levels.values())
    if top_prior:
        info = read_prior_info(top_prior, "--top-prior-from")
        if info.level != top_level:
            raise JukeboxError(f"--top-prior-from {top_prior}: a prior of level {info.level}, "
                               f"not the top level {top_level}")
        priors.append(("--top-prior-from", info))
    for flag, info in priors if vq is not None else ():
        check_against_vqvae(info, vq, flag)
    return ImportedRuns(vqvae, {level: info.run_dir for level, (_, info) in levels.items()},
                        top_prior, vq.sample_rate if vq is not None else None)

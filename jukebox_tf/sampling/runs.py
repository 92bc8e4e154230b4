"""A trained hierarchy loaded from run directories, for sampling: the VQ-VAE of `train-vqvae`,
the top-level prior and the upsamplers of `train-prior`, checked against each other before any
weights are loaded, and artist / genre names turned into the ids the priors were trained with.

    runs = load_hierarchy("runs/vqvae", "runs/top", ["runs/up1", "runs/up0"])
    artist_id, genre_ids, warnings = runs.label_ids("Willow Harper", ["folk"])
    codes = sample_codes("ancestral", runs.vqvae, runs.priors,
                         SamplingSettings(seconds=5, artist_id=artist_id, genre_ids=genre_ids))

`runs.priors` is indexed by level (None where no run was given), as sample_codes wants it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from jukebox_tf.codes.hierarchy import CodeHierarchy, PriorFacts
from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior.label_vocab import UNKNOWN, LabelVocab



@dataclasses.dataclass
class RunInfo:
    """What a prior run's task.json says, without loading its weights."""

    run_dir: str
    level: int
    config: dict  # the PriorConfig as a dict
    codes: dict  # level, levels, hop_lengths, l_bins, sample_rate, artists, genres, vqvae_run


@dataclasses.dataclass
class Hierarchy:
    vqvae: object  # the VQ-VAE model (None from plan_hierarchy)
    vqvae_config: object  # VQVAEConfig
    vqvae_run: str
    priors: list  # index = level; the loaded prior, or None (RunInfo from plan_hierarchy)
    runs: dict[int, RunInfo]  # level -> the run it comes from
    vocab: LabelVocab  # the top prior's label names (id 0 = unknown), else an upsampler's
    notes: list[str]  # what was chosen for the user (e.g. the default VQ-VAE run)
    warnings: list[str] = dataclasses.field(default_factory=list)  # doubtful combinations
    # level -> its run's label names where they differ from `vocab` (the released 1B lyrics
    # model's top prior names v3 ids, its upsamplers v2 ids).
    level_vocabs: dict[int, LabelVocab] = dataclasses.field(default_factory=dict)

    @property
    def artists(self) -> tuple[str, ...]:
        return self.vocab.artists

    @property
    def genres(self) -> tuple[str, ...]:
        return self.vocab.genres

    @property
    def top(self) -> int:
        return self.vqvae_config.levels - 1

    @property
    def uses_labels(self) -> bool:
        return any(info.config.get("labels") for info in self.runs.values())

    @property
    def uses_lyrics(self) -> bool:
        top = self.runs.get(self.top)
        return bool(top and top.config.get("lyrics"))

    def vocab_of(self, level: int) -> LabelVocab:
        return self.level_vocabs.get(level, self.vocab)

    def label_ids(self, artist: str | None, genres: Sequence[str] = ()
                  ) -> tuple[int, list[int], list[str]]:
        """label_ids by `vocab` (the top prior's names)."""
        return label_ids(artist, genres, self.vocab)

    def level_label_ids(self, artist: str | None, genres: Sequence[str] = ()
                        ) -> tuple[dict[int, int], dict[int, list[int]], list[str]]:
        """({level: artist id}, {level: genre ids}, warnings) for every level, each by its
        run's names (SamplingSettings takes both dicts); a warning is given once."""
        artists, genre_ids, warnings = {}, {}, []
        for level in range(self.vqvae_config.levels):
            artists[level], genre_ids[level], found = label_ids(artist, genres,
                                                                self.vocab_of(level))
            warnings += [w for w in found if w not in warnings]
        return artists, genre_ids, warnings


def _require_dir(path: str, what: str, flag: str):
    import tensorflow as tf

    if not path:
        raise JukeboxError(f"no {what} given: pass {flag} RUN_DIR")
    if not tf.io.gfile.isdir(path):
        raise JukeboxError(f"{flag} {path}: no such directory (the run directory of {what})")


def read_vqvae_config(run_dir: str, flag: str = "--vqvae"):
    """The VQVAEConfig saved in a `train-vqvae` run directory (no weights loaded)."""
    from jukebox_tf.training.run_dir import read_task_json
    from jukebox_tf.vqvae.config import VQVAEConfig

    _require_dir(run_dir, "the VQ-VAE", flag)
    try:
        saved = read_task_json(run_dir, "vqvae", "VQ-VAE", "train-vqvae")
    except JukeboxError as e:
        raise JukeboxError(f"{flag} {run_dir}: {e}") from None
    return VQVAEConfig.from_dict(saved["vqvae"])


def read_prior_info(run_dir: str, flag: str) -> RunInfo:
    from jukebox_tf.prior.task import prior_run_info

    _require_dir(run_dir, "a prior" if flag == "--prior" else "an upsampler", flag)
    try:
        saved = prior_run_info(run_dir)
    except JukeboxError as e:
        raise JukeboxError(f"{flag} {run_dir}: {e}") from None
    config = saved["prior"]
    return RunInfo(run_dir, int(config["level"]), config, dict(saved.get("codes") or {}))


def check_against_vqvae(info: RunInfo, vq, flag: str):
    """The prior must model codes of this VQ-VAE: same levels, hops, codebook and rate."""
    rate = info.codes.get("sample_rate")
    if rate is None and info.config.get("labels"):
        rate = info.config.get("sample_rate")
    facts = PriorFacts(levels=info.config.get("levels", info.codes.get("levels")),
                       l_bins=info.config["l_bins"], sample_rate=rate,
                       hop_lengths=info.codes.get("hop_lengths"))
    CodeHierarchy.of(vq).check(facts, f"{flag} {info.run_dir}")


def _same_run(a: str | None, b: str | None) -> bool:
    return bool(a and b) and os.path.realpath(a) == os.path.realpath(b)


def plan_hierarchy(vqvae_dir: str | None, prior_dir: str | None,
                   upsampler_dirs: Sequence[str] = ()) -> Hierarchy:
    """Reads and cross-checks every run's config (no TensorFlow model is built): the returned
    Hierarchy has vqvae=None and RunInfo objects in `priors`. vqvae_dir defaults to the VQ-VAE
    run the priors' codes were encoded with (recorded by `jukebox-tf encode`)."""
    infos: dict[int, RunInfo] = {}
    given = []
    if prior_dir is not None:
        given.append((read_prior_info(prior_dir, "--prior"), "--prior"))
    for path in upsampler_dirs:
        given.append((read_prior_info(path, "--upsamplers"), "--upsamplers"))
    if not given:
        raise JukeboxError("no prior given: pass --prior (the top-level prior) and/or "
                           "--upsamplers")
    notes, warnings = [], []
    if vqvae_dir is None:
        recorded = [i.codes.get("vqvae_run") for i, _ in given if i.codes.get("vqvae_run")]
        if not recorded:
            raise JukeboxError("no VQ-VAE given: pass --vqvae RUN_DIR (the priors' codes do not "
                               "record which VQ-VAE run encoded them)")
        vqvae_dir = recorded[0]
        notes.append(f"using the VQ-VAE the priors' codes were encoded with: {vqvae_dir}")
    vq = read_vqvae_config(vqvae_dir)
    top = vq.levels - 1
    for info, flag in given:
        check_against_vqvae(info, vq, flag)
        if flag == "--prior" and info.level != top:
            raise JukeboxError(f"--prior {info.run_dir}: an upsampler (level {info.level}); "
                               f"--prior takes the top-level prior (level {top}), upsamplers go "
                               f"to --upsamplers")
        if flag == "--upsamplers" and info.level == top:
            raise JukeboxError(f"--upsamplers {info.run_dir}: the top-level prior (level "
                               f"{top}); pass it as --prior")
        if info.level in infos:
            raise JukeboxError(f"{info.run_dir} and {infos[info.level].run_dir} both model "
                               f"level {info.level}: give one run per level")
        infos[info.level] = info
        recorded = info.codes.get("vqvae_run")
        if recorded and os.path.isdir(recorded) and not _same_run(recorded, vqvae_dir):
            warnings.append(f"{flag} {info.run_dir} was trained on codes of the VQ-VAE in "
                            f"{recorded}, not {vqvae_dir} (the sizes match; the codes may "
                            f"not)")
    # Label names: the top prior's, else an upsampler's; a level whose run names other ids
    # gets its own, so a name means the same artist at every level.
    vocab = LabelVocab.from_codes_info((infos.get(top) or infos[max(infos)]).codes)
    level_vocabs = {level: LabelVocab.from_codes_info(info.codes)
                    for level, info in infos.items() if info.config.get("labels")}
    level_vocabs = {level: v for level, v in level_vocabs.items() if v != vocab}
    priors = [infos.get(level) for level in range(vq.levels)]
    return Hierarchy(None, vq, vqvae_dir, priors, infos, vocab, notes, warnings, level_vocabs)


def load_weights(plan: Hierarchy, levels: Sequence[int] | None = None,
                 use_ema: bool = True) -> Hierarchy:
    """Loads the VQ-VAE and the priors of `levels` (default: every level with a run) into a
    plan from plan_hierarchy; the other levels' priors become None."""
    from jukebox_tf.prior.task import load_prior_run
    from jukebox_tf.vqvae.task import load_vqvae_run

    levels = set(plan.runs if levels is None else levels)
    plan.vqvae = load_vqvae_run(plan.vqvae_run, use_ema=use_ema)
    plan.priors = [load_prior_run(plan.runs[level].run_dir, use_ema=use_ema)
                   if level in levels and level in plan.runs else None
                   for level in range(plan.vqvae_config.levels)]
    return plan


def load_hierarchy(vqvae_dir: str | None, prior_dir: str | None,
                   upsampler_dirs: Sequence[str] = (), use_ema: bool = True) -> Hierarchy:
    """plan_hierarchy, then the weights: the VQ-VAE and every prior (EMA weights by default)."""
    return load_weights(plan_hierarchy(vqvae_dir, prior_dir, upsampler_dirs), use_ema=use_ema)


def _known(names: Sequence[str], most: int = 12) -> str:
    names = [n for n in names if n and n != UNKNOWN]
    if not names:
        return "none: trained without labels"
    more = f" ({len(names) - most} more)" if len(names) > most else ""
    return ", ".join(repr(n) for n in names[:most]) + more


def label_ids(artist: str | None, genres: Sequence[str], vocab: LabelVocab
              ) -> tuple[int, list[int], list[str]]:
    """(artist id, genre ids, warnings): names as `vocab`'s naming scheme matches them
    (label_vocab: for runs trained here, case-insensitively, genres split into words as ingest
    splits them, 'synth pop; rock' -> synth, pop, rock); unknown names map to id 0 with a
    warning naming known ones. No genre -> [0] ('unknown'), as for tracks without one in
    training."""
    warnings = []
    artist_id = 0
    if artist:
        found = vocab.artist_id(artist)
        if found is None:
            warnings.append(f"unknown artist {artist!r}: using id 0 ({UNKNOWN}); known "
                            f"artists: {_known(vocab.artists)}")
        else:
            artist_id = found
    genre_ids = []
    for key, found in [pair for genre in genres for pair in vocab.genre_ids(genre)]:
        if found is None:
            warnings.append(f"unknown genre {key!r}: using id 0 ({UNKNOWN}); known genres: "
                            f"{_known(vocab.genres)}")
            found = 0
        genre_ids.append(found)
    return artist_id, genre_ids or [0], warnings

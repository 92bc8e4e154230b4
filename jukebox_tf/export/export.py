"""Writing a versioned SavedModel of a trained hierarchy for TF Serving.

    result = export_models(vqvae, [upsampler_0, upsampler_1, top], "models/jukebox",
                           vocab=runs.vocab, level_vocabs=runs.level_vocabs)
    result.path      # models/jukebox/<version>

MODEL_BASE/<version>/ holds:

- saved_model.pb, variables/: the signatures of module.py (encode, decode, sample, upsample,
  upsample_part, generate = serving_default, metadata, and the sampling ones' *_xla twins);
- assets/metadata.json (what the metadata signature returns, plus the signature summaries),
  assets/artists.txt and assets/genres.txt (one name per line; line index = id);
- assets.extra/serving_limits.json: per-input value limits for `serving/` (codes inside the
  codebook, lengths, settings; stock TF Serving ignores it);
- assets.extra/tf_serving_warmup_requests: one small PredictRequest per signature.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from typing import Mapping, Sequence

import numpy as np

from jukebox_tf import storage
from jukebox_tf.errors import JukeboxError
from jukebox_tf.export.module import XLA_SUFFIX, ExportInfo, JukeboxModule
from jukebox_tf.prior.label_vocab import LabelVocab
from jukebox_tf.export.versions import write_version
from jukebox_tf.export.warmup import WARMUP_FILE, example_inputs, write_warmup
from jukebox_tf.sampling import prior_api
from jukebox_tf.sampling.modes import AUTO_XLA_MAX_CPU_PARAMS
from jukebox_tf.sampling.windowed import HOP_FRACTIONS

LIMITS_FILE = os.path.join("assets.extra", "serving_limits.json")
METADATA_ASSET = "metadata.json"


@dataclasses.dataclass(frozen=True)
class ExportLimits:
    """What assets.extra/serving_limits.json allows (the server rejects the rest before
    running anything)."""

    max_generate_seconds: float = 20.0  # generate: the whole hierarchy in one call
    max_sample_seconds: float = 600.0  # sample: n_tokens and prime, in top-level tokens
    max_audio_seconds: float = 600.0  # encode's audio, decode's and upsample's codes
    max_track_seconds: float = 3600.0  # total_seconds and offset_seconds
    max_temperature: float = 2.0


@dataclasses.dataclass
class ExportResult:
    path: str
    version: int
    signatures: list[str]
    seconds: float
    size_bytes: int


def serving_limits(meta: dict, limits: ExportLimits) -> dict:
    """The serving_limits.json rules of a model with this metadata."""
    rate, hops, top = meta["sample_rate"], meta["hop_lengths"], meta["levels"] - 1
    last_code = meta["codebook_size"] - 1
    audio_samples = int(limits.max_audio_seconds * rate)
    track = {"min": 0.0, "max": limits.max_track_seconds}
    settings = {"temperature": {"min": 0.0, "max": limits.max_temperature},
                "top_k": {"min": 0, "max": meta["codebook_size"]},
                "top_p": {"min": 0.0, "max": 1.0}}
    audio_dims = [None, audio_samples] + ([None] if meta["channels"] > 1 else [])
    rules = {
        "encode": {"audio": {"max_dims": audio_dims},
                   "sample_rate": {"min": rate, "max": rate}},
        "decode": {"codes": {"min": 0, "max": last_code,
                             "max_dims": [None, audio_samples // hops[0]]},
                   "level": {"min": 0, "max": top}},
    }
    signatures = meta["signatures"]
    if "sample" in signatures:
        max_tokens = max(1, math.ceil(limits.max_sample_seconds * rate / hops[top]))
        rules["sample"] = {"n_tokens": {"min": 1, "max": max_tokens},
                           "prime": {"min": 0, "max": last_code, "allow_empty": True,
                                     "max_dims": [None, max_tokens]},
                           "total_seconds": track, "offset_seconds": track, **settings}
    if "upsample" in signatures:
        levels = [lv for lv in meta["prior_levels"] if lv < top]
        rules["upsample"] = {"codes": {"min": 0, "max": last_code,
                                       "max_dims": [None, audio_samples // hops[min(levels) + 1]]},
                             "level": {"min": min(levels), "max": max(levels)},
                             "total_seconds": track, "offset_seconds": track, **settings}
        lowest = audio_samples // hops[min(levels)]
        rules["upsample_part"] = {
            "codes": {"min": 0, "max": last_code, "allow_empty": True,
                      "max_dims": [None, audio_samples // hops[min(levels) + 1]]},
            "level": {"min": min(levels), "max": max(levels)},
            "total_tokens": {"min": 1, "max": lowest}, "min_tokens": {"min": 0, "max": lowest},
            "prime": {"min": 0, "max": last_code, "allow_empty": True,
                      "max_dims": [None, lowest]},
            "total_seconds": track, "offset_seconds": track, **settings}
    if "generate" in signatures:
        # One top-level code at least; as float32 gives it (the input's dtype), so that the
        # float32 of exactly that length passes.
        rules["generate"] = {"seconds": {"min": float(np.float32(hops[top] / rate)),
                                         "max": limits.max_generate_seconds},
                             "total_seconds": track, **settings}
    # serving_default is the same function under a second name: the same checks.
    for name in signatures:
        base = name[:-len(XLA_SUFFIX)]
        if name.endswith(XLA_SUFFIX) and base in rules:
            rules[name] = json.loads(json.dumps(rules[base]))
    default = "generate" if "generate" in signatures else "metadata"
    if default in rules:
        rules["serving_default"] = json.loads(json.dumps(rules[default]))
    return rules


def _by_level(priors: Sequence, levels: int) -> list:
    """Priors in any order (None ignored) -> a list indexed by level."""
    out = [None] * levels
    for prior in priors:
        if prior is None:
            continue
        level = int(prior.config.level)
        if not 0 <= level < levels:
            raise JukeboxError(f"a prior models level {level}; the VQ-VAE has {levels} levels")
        if out[level] is not None:
            raise JukeboxError(f"two priors model level {level}: give one per level")
        out[level] = prior
    return out


def twins_by_default(priors: Sequence) -> bool:
    """Whether an export carries the XLA twins when not told: when `sample --xla` would compile
    each of the priors on a CPU (sampling.modes.AUTO_XLA_MAX_CPU_PARAMS). The released 1B and
    5B priors compile for minutes and GBs there and then sample slower than uncompiled."""
    return all(prior_api.n_params(p) <= AUTO_XLA_MAX_CPU_PARAMS for p in priors if p is not None)


def _tree_size(path: str) -> int:
    return sum(storage.getsize(os.path.join(d, f)) for d, _, files in storage.walk(path)
               for f in files)


def export_models(vqvae, priors: Sequence, out_base: str, version: int | None = None, *,
                  vocab: LabelVocab = LabelVocab(),
                  level_vocabs: Mapping[int, LabelVocab] | None = None,
                  limits: ExportLimits = ExportLimits(), model_name: str = "jukebox",
                  hop_fractions: Sequence[float] = HOP_FRACTIONS, chunk_size: int = 32,
                  warmup: bool = True, xla: bool | None = None, log=None) -> ExportResult:
    """Writes out_base/<version>/ (see the module docstring) atomically; version None: one
    more than the largest existing. priors: the top prior and/or upsamplers, in any order
    (None entries ignored). vocab: the names the priors' label ids stand for, e.g.
    runs.Hierarchy.vocab; level_vocabs: {level: names} of the levels whose priors name other
    ids (runs.Hierarchy.level_vocabs). xla: also the sampling signatures' XLA twins
    (module.XLA_SUFFIX); None: `twins_by_default`. Warmup requests are written for the plain
    signatures only (a server without XLA would fail them, and TF Serving then refuses the
    version)."""
    import tensorflow as tf

    log = log or (lambda message: None)
    started = time.perf_counter()
    by_level = _by_level(priors, vqvae.config.levels)
    if xla is None:
        xla = twins_by_default(by_level)
        if not xla:
            log("leaving out the XLA twins: a prior has more than "
                f"{AUTO_XLA_MAX_CPU_PARAMS:,} weights, which a CPU samples faster uncompiled "
                "(export --xla writes them, e.g. for a server on a GPU)")
    if not any(p is not None for p in by_level):
        log("no priors: exporting encode, decode and metadata only")
    info_kwargs = dict(vocab=vocab, level_vocabs=tuple(sorted((level_vocabs or {}).items())),
                       hop_fractions=tuple(hop_fractions), chunk_size=chunk_size,
                       model_name=model_name, xla=xla)

    def write(tmp: str, chosen: int) -> None:
        try:
            module = JukeboxModule(vqvae, by_level, ExportInfo(version=chosen, **info_kwargs))
        except ValueError as e:  # the models do not fit together
            raise JukeboxError(f"cannot export these models: {e}") from None
        meta = module.metadata_dict()
        with tempfile.TemporaryDirectory(prefix="jukebox-export-assets-") as staging:
            files = {METADATA_ASSET: json.dumps(meta, indent=1, sort_keys=True) + "\n",
                     "artists.txt": "".join(f"{a}\n" for a in meta["artists"]),
                     "genres.txt": "".join(f"{g}\n" for g in meta["genres"])}
            for name, text in files.items():
                with open(os.path.join(staging, name), "w", encoding="utf-8") as f:
                    f.write(text)
            # Tracked assets are copied into <version>/assets/ by the save.
            module.asset_files = {name.split(".")[0]: tf.saved_model.Asset(
                os.path.join(staging, name)) for name in files}
            log(f"tracing {', '.join(module.signature_names())} and saving version {chosen}")
            # No custom gradients: serving takes none, and each call site of one (the
            # LayerNorms, the VQ-VAE's convolutions) saved a gradient function that the
            # Python loader rebuilds as a graph (4,698 of them, 8 GB of RSS, for the 1B
            # hierarchy). Stock TF Serving ignores them either way.
            tf.saved_model.save(module, tmp, signatures=module.signatures(),
                                options=tf.saved_model.SaveOptions(
                                    experimental_custom_gradients=False))
        storage.makedirs(os.path.join(tmp, "assets.extra"))
        with storage.open(os.path.join(tmp, LIMITS_FILE), "w") as f:
            json.dump(serving_limits(meta, limits), f, indent=1, sort_keys=True)
        if warmup:
            write_warmup(os.path.join(tmp, WARMUP_FILE), model_name, example_inputs(meta))
        nonlocal signatures
        signatures = module.signature_names()

    signatures: list[str] = []
    path, chosen = write_version(out_base, write, version)
    return ExportResult(path, chosen, signatures, time.perf_counter() - started,
                        _tree_size(path))

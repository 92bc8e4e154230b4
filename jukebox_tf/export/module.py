"""The exported model: a `tf.Module` whose `tf.function`s are the SavedModel's signatures.

Everything a request needs runs in graph (stock ops only; no Python-side state, no custom
ops): the request checks (request_checks.py), name -> id lookups, lyric tokenization and
label rows (conditioning.py), the grouping of rows (row_groups.py), the windowed token loops
with their key/value caches (graph_sampling.py), the VQ-VAE's encoders and decoders. This
file holds the signatures, in the order of export/README.md's table. The Keras models'
variables are tracked by the module through plain lists of their tf.Variables (Keras 3 keeps
sublayer lists where TensorFlow's object tracking does not look), and the Keras objects
themselves are left out of the saved object graph, so loading needs TensorFlow only.

Signatures (B = batch, open; int32 unless noted; see SIGNATURES for the text). Every input
and output has the batch dimension first, settings included (one per row), so stock TF
Serving's batcher (--enable_batching) can merge concurrent requests: it refuses scalars and
input-less signatures, concatenates inputs along dimension 0 and splits the outputs back.
Each row depends only on its own inputs (its seed, settings and conditioning), so a request
gets the same result alone or merged. Rows whose `level`, `n_tokens` or `seconds` differ run
one group after another, and the outputs are padded to the longest row: codes with -1, audio
with 0 (a request merged with a longer one gets its result padded).

- encode(audio float32 [B, S], sample_rate [B]) -> codes_l0 [B, S/hop0], codes_l1, codes_l2
- decode(codes [B, N], level [B]) -> audio float32 [B, N * hop_level]
- sample(artist string [B], genres string [B], lyrics string [B], total_seconds float32 [B],
         offset_seconds float32 [B], n_tokens [B], temperature float32 [B], top_k [B],
         top_p float32 [B], seed int64 [B], prime [B, P]) -> codes [B, n_tokens]
- upsample(codes [B, N], level [B], artist, genres, total_seconds, offset_seconds,
           temperature, top_k, top_p, seed) -> codes [B, N * hop_ratio]
- upsample_part(codes [B, N so far], level [B], total_tokens [B], prime [B, P], min_tokens [B],
                artist, genres, total_seconds, offset_seconds, settings)
  -> codes [B, M], upper_needed [B]: upsample's windows a few at a time (window by window)
- generate = serving_default(artist, genres, lyrics, seconds float32 [B], total_seconds,
           temperature, top_k, top_p, seed) -> audio float32 [B, S], codes_l<level> ...
- metadata(rows [B], values unused) -> sample_rate [B], hop_lengths [B, levels], ...
(audio is [B, S, channels] instead for a VQ-VAE with more than one channel.)
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Sequence

import tensorflow as tf

from jukebox_tf.codes.hierarchy import CodeHierarchy
from jukebox_tf.export.conditioning import (label_rows, lookup_table, tokenize_lyrics,
                                            to_samples, total_samples_or)
from jukebox_tf.export.graph_sampling import (GraphSettings, LevelWindows, compiled_window,
                                              sample_level_graph)
from jukebox_tf.export.request_checks import (checked_codes, checked_decode_level,
                                              checked_encode_length, checked_n_tokens,
                                              checked_prime, checked_seconds, checked_settings,
                                              checked_total_tokens, checked_upsampler_level,
                                              same_batch)
from jukebox_tf.export.row_groups import PAD_CODE, longest_row, run_in_groups
from jukebox_tf.prior.label_vocab import LabelVocab
from jukebox_tf.sampling import prior_api
from jukebox_tf.sampling.streaming import receptive_field
from jukebox_tf.sampling.windowed import HOP_FRACTIONS
from jukebox_tf.training.ema import tf_variable

SIGNATURES = {
    "encode": "audio float32 [batch, samples] at the model's sample rate (cut to whole "
              "top-level codes) + sample_rate int32 [batch] -> codes_l<level> int32 [batch, "
              "samples / hop_length] for every level",
    "decode": "codes int32 [batch, n] + level int32 [batch] -> audio float32 "
              "[batch, n * hop_length of the level]",
    "sample": "conditioning + settings [batch] -> codes int32 [batch, n_tokens] of the top "
              "level (the prime's codes first)",
    "upsample": "codes int32 [batch, n] of level + 1 + level int32 [batch] + conditioning + "
                "settings -> codes int32 [batch, n * hop_ratio] of `level`",
    "upsample_part": "codes int32 [batch, n] of level + 1 so far + level + total_tokens "
                     "[batch] (the level's whole length) + prime int32 [batch, p] (the level "
                     "so far) + min_tokens [batch] + conditioning + settings -> codes int32 "
                     "[batch, m] of `level` (prime first; the windows up to the one reaching "
                     "min_tokens, as far as codes reach) + upper_needed int32 [batch] (codes "
                     "of level + 1 the next window reads; 0: the level is complete)",
    "generate": "conditioning + seconds [batch] -> audio float32 [batch, samples] and the "
                "codes of every sampled level; also serving_default",
    "metadata": "rows int32 [batch] (values unused) -> per row: sample rate, hop lengths, "
                "codebook size, context lengths, vocabularies, version, everything as JSON",
}

SAMPLING = ("sample", "upsample", "upsample_part", "generate")
# Each sampling signature's twin whose windows run as XLA clusters: the fast path, for a server
# with XLA enabled (stock TF Serving: --xla_cpu_compilation_enabled=true; export/README.md).
XLA_SUFFIX = "_xla"


def describe_signature(name: str) -> str:
    if name.endswith(XLA_SUFFIX):
        base = name[:-len(XLA_SUFFIX)]
        return (f"{SIGNATURES[base]}; as `{base}`, the same tokens, each window's token loop "
                f"compiled with XLA (the server must have XLA enabled)")
    return SIGNATURES[name]


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """What the export bakes in besides the weights."""

    version: int
    vocab: LabelVocab = LabelVocab()  # the names the label ids stand for
    # (level, names) where a level's prior names other ids (runs.Hierarchy.level_vocabs).
    level_vocabs: tuple[tuple[int, LabelVocab], ...] = ()

    def vocab_of(self, level: int) -> LabelVocab:
        return dict(self.level_vocabs).get(level, self.vocab)
    hop_fractions: tuple[float, ...] = HOP_FRACTIONS
    chunk_size: int = 32
    model_name: str = "jukebox"
    xla: bool = True  # also the sampling signatures' XLA twins (XLA_SUFFIX)


class _Models:
    """The Keras models and the functions shared by the signatures, out of TensorFlow's
    object tracking (a plain Python object): the saved object graph holds only the module's
    signature functions, variable lists and tables."""

    def __init__(self, vqvae, priors):
        self.vqvae, self.priors = vqvae, list(priors)
        self.level_fns: dict = {}  # level -> tf.function sampling that level (one trace)
        self.decode_fns: dict = {}  # level -> tf.function decoding that level's codes
        self.receptive_fields: list | None = None  # per level (decoder_receptive_fields)


def _per_row(dtype, name):
    return tf.TensorSpec([None], dtype, name=name)


class JukeboxModule(tf.Module):
    """See the module docstring. `priors` is indexed by level (None where absent)."""

    def __init__(self, vqvae, priors: Sequence, info: ExportInfo):
        super().__init__(name="jukebox")
        config = vqvae.config
        if len(priors) != config.levels:
            raise ValueError(f"give one prior (or None) per VQ-VAE level: {len(priors)} for "
                             f"{config.levels} levels")
        self._models = _Models(vqvae, priors)
        self._info = info
        self._config = config
        self.vqvae_variables = [tf_variable(v) for v in vqvae.variables]
        self.prior_variables = {f"level_{level}": [tf_variable(v) for v in prior.variables]
                                for level, prior in enumerate(priors) if prior is not None}
        # One pair of tables per distinct vocabulary; level -> its pair's index.
        vocabs = [info.vocab] + [v for _, v in info.level_vocabs]
        self._table_index = {level: vocabs.index(info.vocab_of(level))
                             for level in range(config.levels)}
        self.artist_tables = [lookup_table(v.artist_table()) for v in vocabs]
        self.genre_tables = [lookup_table(v.genre_table()) for v in vocabs]
        self._check_priors()

        channels = config.channels
        audio_shape = [None, None] if channels == 1 else [None, None, channels]
        self.encode = tf.function(self._encode, autograph=False, input_signature=[
            tf.TensorSpec(audio_shape, tf.float32, name="audio"),
            _per_row(tf.int32, "sample_rate")])
        self.decode = tf.function(self._decode, autograph=False, input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="codes"), _per_row(tf.int32, "level")])
        self.metadata = tf.function(self._metadata, autograph=False, input_signature=[
            _per_row(tf.int32, "rows")])
        strings = tf.TensorSpec([None], tf.string)
        settings = [_per_row(tf.float32, "temperature"), _per_row(tf.int32, "top_k"),
                    _per_row(tf.float32, "top_p"), _per_row(tf.int64, "seed")]
        sampling = {}
        if self.top_prior is not None:
            sampling["sample"] = (self._sample, [
                strings, strings, strings, _per_row(tf.float32, "total_seconds"),
                _per_row(tf.float32, "offset_seconds"), _per_row(tf.int32, "n_tokens"),
                *settings, tf.TensorSpec([None, None], tf.int32, name="prime")])
            sampling["generate"] = (self._generate, [
                strings, strings, strings, _per_row(tf.float32, "seconds"),
                _per_row(tf.float32, "total_seconds"), *settings])
        if self.upsampler_levels:
            sampling["upsample"] = (self._upsample, [
                tf.TensorSpec([None, None], tf.int32, name="codes"), _per_row(tf.int32, "level"),
                strings, strings, _per_row(tf.float32, "total_seconds"),
                _per_row(tf.float32, "offset_seconds"), *settings])
            sampling["upsample_part"] = (self._upsample_part, [
                tf.TensorSpec([None, None], tf.int32, name="codes"), _per_row(tf.int32, "level"),
                _per_row(tf.int32, "total_tokens"),
                tf.TensorSpec([None, None], tf.int32, name="prime"),
                _per_row(tf.int32, "min_tokens"), strings, strings,
                _per_row(tf.float32, "total_seconds"), _per_row(tf.float32, "offset_seconds"),
                *settings])
        for name, (method, spec) in sampling.items():
            setattr(self, name, tf.function(method, autograph=False, input_signature=spec))
            if info.xla:
                setattr(self, name + XLA_SUFFIX, tf.function(
                    functools.partial(method, xla=True), autograph=False, input_signature=spec))

    # -- structure -----------------------------------------------------------------------------

    @property
    def levels(self) -> int:
        return self._config.levels

    @property
    def top_prior(self):
        return self._models.priors[-1]

    @property
    def upsampler_levels(self) -> list[int]:
        return [level for level, p in enumerate(self._models.priors[:-1]) if p is not None]

    @property
    def generated_levels(self) -> list[int]:
        """Levels `generate` samples: the top, then down while upsamplers follow."""
        out = []
        for level in reversed(range(self.levels)):
            if self._models.priors[level] is None:
                break
            out.append(level)
        return out

    def signature_names(self) -> list[str]:
        names = ["encode", "decode"]
        if self.top_prior is not None:
            names.append("sample")
        if self.upsampler_levels:
            names += ["upsample", "upsample_part"]
        if self.top_prior is not None:
            names.append("generate")
        compiled = [name + XLA_SUFFIX for name in names if name in SAMPLING and self._info.xla]
        return names + ["metadata"] + compiled

    def signatures(self) -> dict:
        """{name: tf.function} for tf.saved_model.save; generate is also serving_default (the
        metadata signature when there is no top prior). The functions, not concrete ones:
        the save traces them in its own context (a trace made before it would be redone)."""
        out = {name: getattr(self, name) for name in self.signature_names()}
        out["serving_default"] = out.get("generate", out["metadata"])
        return out

    def _check_priors(self):
        hierarchy = CodeHierarchy.of(self._config)
        for level, prior in enumerate(self._models.priors):
            if prior is None:
                continue
            if prior_api.prior_level(prior) != level:
                raise ValueError(f"priors[{level}] models level {prior_api.prior_level(prior)}")
            hierarchy.check(prior_api.facts(prior), f"the level-{level} prior")
            if level < self.levels - 1:
                ratio = hierarchy.hop_ratio(level)
                ctx = prior_api.n_ctx(prior)
                hop = int(self._hop_fraction(level) * ctx)
                if not 0 < hop <= ctx or hop % ratio or ctx % ratio:
                    raise ValueError(f"level {level}: windows of n_ctx={ctx} tokens every "
                                     f"{hop} (hop fraction {self._hop_fraction(level)}) do not "
                                     f"line up with the level above (hop ratio {ratio})")

    # -- signatures ----------------------------------------------------------------------------

    def _encode(self, audio, sample_rate):
        config = self._config
        checked = same_batch("audio", {"audio": audio, "sample_rate": sample_rate})
        audio, sample_rate = checked["audio"], checked["sample_rate"]
        length = checked_encode_length(audio, sample_rate, config)
        audio = audio[:, :length]
        if config.channels == 1:
            audio = audio[..., None]
        codes = self._models.vqvae.encode(audio, levels=range(config.levels))
        return {f"codes_l{level}": tf.cast(c, tf.int32) for level, c in enumerate(codes)}

    def _decode(self, codes, level):
        checked = same_batch("codes", {"codes": codes, "level": level})
        level = checked_decode_level(checked["level"], self.levels)
        codes = checked_codes(checked["codes"], "codes", self._config.l_bins)
        hops = self._level_lookup(level, self._config.hop_lengths)
        longest = tf.shape(codes)[1] * longest_row(hops)

        def run(rows, value):
            part = tf.gather(codes, rows)
            branches = [lambda lv=lv: self._decode_level(part, lv) for lv in range(self.levels)]
            return {"audio": tf.switch_case(value, branches)}

        return run_in_groups(level, run, {
            "audio": (self._audio_rows(tf.shape(codes)[0], longest), 0.0)})

    def _sample(self, artist, genres, lyrics, total_seconds, offset_seconds, n_tokens,
                temperature, top_k, top_p, seed, prime, xla: bool = False):
        top = self.levels - 1
        hop = self._config.hop_lengths[top]
        rows = same_batch("artist", dict(
            artist=artist, genres=genres, lyrics=lyrics, total_seconds=total_seconds,
            offset_seconds=offset_seconds, n_tokens=n_tokens, temperature=temperature,
            top_k=top_k, top_p=top_p, seed=seed))
        settings = checked_settings(rows)
        n_tokens = checked_n_tokens(rows["n_tokens"])
        # An empty prime ([B, 0] or [0, 0]) means none.
        batch = tf.shape(artist)[0]
        prime = tf.cond(tf.size(prime) > 0, lambda: prime,
                        lambda: tf.zeros([batch, 0], tf.int32))
        prime = checked_prime(prime, batch, n_tokens, self._config.l_bins)
        rate = self._config.sample_rate
        offset = to_samples(rows["offset_seconds"], rate)
        total = total_samples_or(rows["total_seconds"], offset + n_tokens * hop, rate)
        labels = self._labels(rows["artist"], rows["genres"], total, offset, top)

        def run(group, value):
            return {"codes": self._sample_level(
                top, value, tf.gather(labels, group), settings.take(group),
                lyrics=tf.gather(rows["lyrics"], group), prime=tf.gather(prime, group),
                xla=xla)}

        longest = longest_row(n_tokens)
        return run_in_groups(n_tokens, run, {
            "codes": (tf.fill([batch, longest], PAD_CODE), PAD_CODE)})

    def _upsample(self, codes, level, artist, genres, total_seconds, offset_seconds,
                  temperature, top_k, top_p, seed, xla: bool = False):
        hops = self._config.hop_lengths
        levels = self.upsampler_levels
        rows = same_batch("codes", dict(
            codes=codes, level=level, artist=artist, genres=genres,
            total_seconds=total_seconds, offset_seconds=offset_seconds,
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed))
        level = checked_upsampler_level(rows["level"], levels, "upsample")
        settings = checked_settings(rows)
        codes = checked_codes(rows["codes"], "codes", self._config.l_bins)
        rate = self._config.sample_rate
        offset = to_samples(rows["offset_seconds"], rate)
        n_audio = tf.shape(codes)[1] * self._level_lookup(level, list(hops[1:]) + [0])
        total = total_samples_or(rows["total_seconds"], offset + n_audio, rate)

        labels = {lv: self._labels(rows["artist"], rows["genres"], total, offset, lv)
                  for lv in levels}

        def branch(lv, group):
            if lv not in levels:
                return lambda: tf.zeros([tf.size(group), 0], tf.int32)

            def run():
                n_tokens = tf.shape(codes)[1] * self._hop_ratios()[lv]
                return self._sample_level(lv, n_tokens, tf.gather(labels[lv], group),
                                          settings.take(group), upper=tf.gather(codes, group),
                                          xla=xla)
            return run

        def run(group, value):
            return {"codes": tf.switch_case(value, [branch(lv, group)
                                                    for lv in range(self.levels - 1)])}

        longest = tf.shape(codes)[1] * tf.reduce_max(
            tf.concat([self._level_lookup(level, self._hop_ratios()), [0]], 0))
        return run_in_groups(level, run, {
            "codes": (tf.fill([tf.shape(codes)[0], longest], PAD_CODE), PAD_CODE)})

    def _upsample_part(self, codes, level, total_tokens, prime, min_tokens, artist, genres,
                       total_seconds, offset_seconds, temperature, top_k, top_p, seed,
                       xla: bool = False):
        """The windows of `upsample` from where `prime` ends: those after it up to the first
        that brings the level to min_tokens, stopping before one whose codes of the level
        above are not in `codes` yet. Feeding the codes back as the prime draws, joined,
        what one `upsample` call draws."""
        hops = self._config.hop_lengths
        rows = same_batch("codes", dict(
            codes=codes, level=level, total_tokens=total_tokens, prime=prime,
            min_tokens=min_tokens, artist=artist, genres=genres, total_seconds=total_seconds,
            offset_seconds=offset_seconds, temperature=temperature, top_k=top_k, top_p=top_p,
            seed=seed))
        level = checked_upsampler_level(rows["level"], self.upsampler_levels, "upsample_part")
        settings = checked_settings(rows)
        ratio = self._level_lookup(level, self._hop_ratios() + [1])
        total_tokens = checked_total_tokens(rows["total_tokens"], rows["codes"], rows["prime"],
                                            ratio)
        codes = checked_codes(rows["codes"], "codes", self._config.l_bins)
        prime = checked_codes(rows["prime"], "prime", self._config.l_bins)
        rate = self._config.sample_rate
        offset = to_samples(rows["offset_seconds"], rate)
        total = total_samples_or(rows["total_seconds"],
                                 offset + total_tokens * self._level_lookup(level, hops), rate)
        labels = {lv: self._labels(rows["artist"], rows["genres"], total, offset, lv)
                  for lv in self.upsampler_levels}

        def branch(lv, group, n_tokens, stop):
            size = tf.size(group)
            if lv not in self.upsampler_levels:
                return lambda: (tf.zeros([size, 0], tf.int32), tf.zeros([size], tf.int32))

            def run():
                part = self._sample_level(lv, n_tokens, tf.gather(labels[lv], group),
                                          settings.take(group), upper=tf.gather(codes, group),
                                          prime=tf.gather(prime, group), stop_tokens=stop,
                                          xla=xla)
                windows = LevelWindows.of(self._models.priors[lv], lv, n_tokens, hops,
                                          self._hop_fraction(lv), upsampler=True)
                after = windows.after(tf.shape(part)[1])
                needed = tf.where(after < windows.count, windows.upper_end(after), 0)
                return part, tf.fill([size], needed)
            return run

        def run(group, value):
            out = tf.switch_case(value[0], [branch(lv, group, value[1], value[2])
                                            for lv in range(self.levels - 1)])
            return {"codes": out[0], "upper_needed": out[1]}

        batch = tf.shape(codes)[0]
        return run_in_groups(tf.stack([level, total_tokens, rows["min_tokens"]], axis=1), run, {
            "codes": (tf.zeros([batch, 0], tf.int32), PAD_CODE),
            "upper_needed": (tf.zeros([batch], tf.int32), 0)})

    def _generate(self, artist, genres, lyrics, seconds, total_seconds, temperature, top_k,
                  top_p, seed, xla: bool = False):
        hops = self._config.hop_lengths
        rows = same_batch("artist", dict(
            artist=artist, genres=genres, lyrics=lyrics, seconds=seconds,
            total_seconds=total_seconds, temperature=temperature, top_k=top_k, top_p=top_p,
            seed=seed))
        settings = checked_settings(rows)
        seconds = checked_seconds(rows["seconds"])
        rate = self._config.sample_rate
        n_audio = tf.maximum(to_samples(seconds, rate) // hops[-1], 1) * hops[-1]
        total = total_samples_or(rows["total_seconds"], n_audio, rate)
        batch = tf.shape(artist)[0]
        lowest = min(self.generated_levels)
        labels = {level: self._labels(rows["artist"], rows["genres"], total,
                                      tf.zeros_like(total), level)
                  for level in self.generated_levels}

        def run(group, value):
            codes = {}
            for level in self.generated_levels:
                codes[level] = self._sample_level(
                    level, value // hops[level], tf.gather(labels[level], group),
                    settings.take(group),
                    lyrics=tf.gather(rows["lyrics"], group), upper=codes.get(level + 1),
                    xla=xla)
            out = {f"codes_l{level}": c for level, c in codes.items()}
            out["audio"] = self._decode_level(codes[lowest], lowest)
            return out

        longest = longest_row(n_audio)
        outputs = {f"codes_l{level}": (tf.fill([batch, longest // hops[level]], PAD_CODE),
                                       PAD_CODE) for level in self.generated_levels}
        outputs["audio"] = (self._audio_rows(batch, longest), 0.0)
        return run_in_groups(n_audio, run, outputs)

    def _metadata(self, rows):
        """Each field repeated once per entry of rows [B]: TF Serving's batcher needs every
        signature to take and return a batch."""
        meta = self.metadata_dict()
        fields = {
            "sample_rate": tf.constant(meta["sample_rate"], tf.int32),
            "channels": tf.constant(meta["channels"], tf.int32),
            "hop_lengths": tf.constant(meta["hop_lengths"], tf.int32),
            "codebook_size": tf.constant(meta["codebook_size"], tf.int32),
            "n_ctx": tf.constant(meta["n_ctx"], tf.int32),
            "artists": tf.constant(meta["artists"], tf.string),
            "genres": tf.constant(meta["genres"], tf.string),
            "version": tf.constant(meta["version"], tf.int64),
            "metadata_json": tf.constant(json.dumps(meta, sort_keys=True)),
        }
        batch = tf.shape(rows)[0]
        return {name: tf.tile(value[None], tf.concat([[batch], tf.ones_like(tf.shape(value))], 0))
                for name, value in fields.items()}

    def metadata_dict(self) -> dict:
        """Everything the metadata signature and assets/metadata.json say."""
        from jukebox_tf import __version__

        config, priors = self._config, self._models.priors
        ctx = [prior_api.n_ctx(p) if p is not None else 0 for p in priors]
        return {
            "format": "jukebox-tf-savedmodel", "format_version": 1,
            "version": self._info.version, "model_name": self._info.model_name,
            "jukebox_tf_version": __version__,
            "sample_rate": config.sample_rate, "channels": config.channels,
            "levels": config.levels, "hop_lengths": list(config.hop_lengths),
            "codebook_size": config.l_bins, "n_ctx": ctx,
            "prior_levels": [level for level, p in enumerate(priors) if p is not None],
            "generated_levels": sorted(self.generated_levels),
            "labels": [bool(p is not None and p.config.labels) for p in priors],
            "max_genre_words": [prior_api.max_genre_words(p) or 0 if p is not None else 0
                                for p in priors],
            "lyrics": bool(self.top_prior is not None
                           and prior_api.n_lyric_tokens(self.top_prior)),
            "n_lyric_tokens": (prior_api.n_lyric_tokens(self.top_prior)
                               if self.top_prior is not None else 0),
            "hop_fractions": list(self._info.hop_fractions),
            "decoder_receptive_field": self.decoder_receptive_fields(),
            "artists": list(self._info.vocab.artists), "genres": list(self._info.vocab.genres),
            "label_names": self._info.vocab.scheme,
            "signatures": {name: describe_signature(name) for name in self.signature_names()},
        }

    def decoder_receptive_fields(self) -> list[int]:
        """Per level, how many codes on each side a code's decoded audio depends on
        (streaming.receptive_field): what a client decoding growing codes part by part needs.
        Measured once, eagerly even while a signature is traced."""
        models = self._models
        if models.receptive_fields is None:
            with tf.init_scope():
                models.receptive_fields = [
                    receptive_field(models.vqvae.decoders[level], self._config.emb_width)
                    for level in range(self.levels)]
        return models.receptive_fields

    # -- shared by the signatures --------------------------------------------------------------

    def _labels(self, artist, genres, total_samples, offset_samples, level: int):
        """conditioning.label_rows of `level`'s prior: its vocabulary (and so its tables) and
        genre slots."""
        tables = self._table_index[level]
        return label_rows(artist, genres, total_samples, offset_samples,
                          self._info.vocab_of(level), self.artist_tables[tables],
                          self.genre_tables[tables], self._max_words(level))

    def _level_fn(self, level: int, xla: bool = False):
        """The tf.function sampling `level` (graph_sampling.sample_level_graph), traced once
        and called by every signature that samples the level; its prior's step is a
        tf.function too, traced once per step length. Unused inputs get empty tensors. xla:
        each window's token loop compiled (graph_sampling.compiled_window)."""
        fns = self._models.level_fns
        if (level, xla) in fns:
            return fns[level, xla]
        prior = self._models.priors[level]
        compiled = compiled_window(prior, self._info.chunk_size) if xla else None
        step = tf.function(prior.step, autograph=False)
        width = 4 + self._max_words(level)
        hop_fraction = self._hop_fraction(level)
        has_lyrics = bool(prior_api.n_lyric_tokens(prior))
        is_upsampler = level < self.levels - 1

        def sample_level(total_tokens, stop_tokens, labels, temperature, top_k, top_p, seed,
                         lyric_tokens, lyric_lengths, upper_codes, prime):
            return sample_level_graph(
                prior, level, total_tokens, self._config.hop_lengths, labels,
                GraphSettings(temperature, top_k, top_p, seed), hop_fraction=hop_fraction,
                lyric_tokens=lyric_tokens if has_lyrics else None,
                lyric_lengths=lyric_lengths if has_lyrics else None,
                upper_codes=upper_codes if is_upsampler else None, prime=prime,
                stop_tokens=stop_tokens, chunk_size=self._info.chunk_size, step=step,
                compiled=compiled)

        codes = tf.TensorSpec([None, None], tf.int32)
        fns[level, xla] = tf.function(sample_level, autograph=False, input_signature=[
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
            tf.TensorSpec([None, width], tf.int32),
            tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int64), codes,
            tf.TensorSpec([None], tf.int32), codes, codes])
        return fns[level, xla]

    def _sample_level(self, level, total_tokens, labels_rows, settings: GraphSettings,
                      lyrics=None, upper=None, prime=None, stop_tokens=None, xla: bool = False):
        """Codes int32 [B, total_tokens] of `level`; total_tokens a scalar (one group).
        stop_tokens: end after the window reaching it (sample_level_graph)."""
        prior = self._models.priors[level]
        batch = tf.shape(labels_rows)[0]
        empty = tf.zeros([batch, 0], tf.int32)
        lyric_tokens, lyric_lengths = empty, tf.zeros([batch], tf.int32)
        if prior_api.n_lyric_tokens(prior):
            lyric_tokens, lyric_lengths = tokenize_lyrics(lyrics, prior)
        total_tokens = tf.cast(total_tokens, tf.int32)
        return self._level_fn(level, xla)(
            total_tokens, total_tokens if stop_tokens is None else stop_tokens,
            labels_rows, settings.temperature,
            settings.top_k, settings.top_p, settings.seed, lyric_tokens, lyric_lengths,
            empty if upper is None else upper, empty if prime is None else prime)

    def _decode_level(self, codes, level: int):
        """A tf.function per level, traced once, shared by decode and generate."""
        fns = self._models.decode_fns
        if level not in fns:
            def decode(codes):
                audio = tf.cast(self._models.vqvae.decode(codes, level), tf.float32)
                return audio[..., 0] if self._config.channels == 1 else audio

            fns[level] = tf.function(decode, autograph=False, input_signature=[
                tf.TensorSpec([None, None], tf.int32)])
        return fns[level](codes)

    def _audio_rows(self, batch, samples) -> tf.Tensor:
        """float32 zeros [batch, samples] (or [batch, samples, channels])."""
        channels = self._config.channels
        return tf.zeros([batch, samples] + ([channels] if channels > 1 else []), tf.float32)

    def _level_lookup(self, level, per_level) -> tf.Tensor:
        """per_level[level] for level int32 [B] (a Python list of ints indexed by level)."""
        return tf.gather(tf.constant(per_level, tf.int32), level)

    def _hop_ratios(self) -> list[int]:
        """Indexed by level: how many of its codes stand for one code of the level above."""
        return CodeHierarchy.of(self._config).hop_ratios()

    def _hop_fraction(self, level: int) -> float:
        fractions = self._info.hop_fractions
        return fractions[min(level, len(fractions) - 1)]

    def _max_words(self, level) -> int:
        return prior_api.max_genre_words(self._models.priors[level]) or 1

"""`jukebox-tf import-weights`: released checkpoints -> ordinary run directories.

    runs = import_weights("openai", "5b_lyrics", ["vqvae.pth.tar", "prior_level_0.pth.tar",
                          "prior_level_1.pth.tar", "prior_level_2.pth.tar"], "runs/released")
    # runs/released/vqvae, upsampler_0, upsampler_1, prior_5b_lyrics: what train-vqvae and
    # train-prior write (task.json, checkpoints/), so sample, export, serve, encode... load them

Everything is checked before anything is written (each part's configuration, every key and
shape, the vocabularies); then each run is written under a temporary name and renamed. The
weights are converted one tensor at a time (checkpoint_writer), so converting takes a few
copies of the largest tensor beyond the file reader's memory, whatever the model's depth.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Callable, Sequence

import numpy as np

from jukebox_tf.errors import JukeboxError
from jukebox_tf.prior.label_vocab import LabelVocab, from_names, read_vocab
from jukebox_tf.released import configs
from jukebox_tf.released.sources import Part, read_parts
from jukebox_tf.released.weight_map import Entry, hf_name, weight_map

# The released models' parameter counts, counted with the original code (REFERENCE.md).
RELEASED_PARAMS = {"vqvae": 1_485_763, "upsampler_0": 981_298_176, "upsampler_1": 981_298_176,
                   "prior_5b": 5_060_452_800, "prior_5b_lyrics": 5_640_506_800,
                   "prior_1b_lyrics": 942_643_200}
_MAX_LISTED = 5  # keys named in an error


@dataclasses.dataclass
class RunPlan:
    """One run to write: a part of the sources, the model it becomes, where each weight is."""
    name: str  # the run directory's name under --out
    part: Part
    config: object  # VQVAEConfig or PriorConfig
    model: object  # the model built without values (keras.StatelessScope)
    entries: list[Entry]
    keys: list[str | None]  # the source key of each entry (None: filled)
    vocab: LabelVocab | None = None  # a prior's label names

    @property
    def params(self) -> int:
        return sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)


def _skeleton(config):
    """The model of `config` with its variables' names, shapes and dtypes but no values."""
    import keras

    from jukebox_tf.prior.prior import prior_class
    from jukebox_tf.vqvae.vqvae import VQVAE

    with keras.StatelessScope(initialize_variables=False):
        if hasattr(config, "emb_width"):
            model = VQVAE(config)
            model.build((None, None, config.channels))
        else:
            model = prior_class(config)(config)
            model.build()
    return model


def _listed(keys: Sequence[str]) -> str:
    more = f" (and {len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def _plan_run(name: str, part: Part, config) -> RunPlan:
    model = _skeleton(config)
    entries = weight_map(model)
    keys = [part.key(e) if e.openai else None for e in entries]
    missing = [e.openai if part.names == "openai" else hf_name(e.openai)
               for e, k in zip(entries, keys) if e.openai and k is None]
    used = {k for k in keys if k}
    if not getattr(config, "merged_decoder", True):  # the tied output layer, listed twice
        used |= {"prior.x_out.weight", "prior.fc_proj_out.weight"}
    unexpected = sorted(set(part.tensors) - used)
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} weight(s) the model needs are missing: "
                            f"{_listed(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
        raise JukeboxError(f"{part.origin}: {part.what} does not match the {name} layout "
                           f"jukebox-tf builds from its configuration; {'; '.join(problems)}")
    for entry, key in zip(entries, keys):
        if key is None:
            continue
        ref = part.tensors[key]
        want = entry.source_shape
        if tuple(ref.shape) != want:
            raise JukeboxError(f"{part.origin}: {key} has shape {tuple(ref.shape)}, the model "
                               f"built from the checkpoint's configuration needs {want} "
                               f"(for {entry.path})")
        if ref.dtype.kind != "f":
            raise JukeboxError(f"{part.origin}: {key} holds {ref.dtype}, not floating point")
    return RunPlan(name, part, config, model, entries, keys)


def _config_of(part: Part, preset: str):
    if part.kind == "vqvae":
        return configs.vqvae_config(part.config, part.names)
    if part.names == "openai":
        return configs.openai_prior_config(part.config, preset)
    return configs.hf_prior_config(part.config, preset, part.shared)


def _vocab_files(paths: Sequence[str]) -> dict[tuple[str, str], str]:
    """{(kind, version): path} of the given vocabularies: the original's v2/v3 id files or
    Hugging Face's artists.json / genres.json (both versions in one file)."""
    files = {}
    for path in paths:
        name = os.path.basename(path).lower()
        kind = "artist" if "artist" in name else "genre" if "genre" in name else None
        if "lyric" in name:
            continue  # the character vocabularies are the original's, known here
        if kind is None or not os.path.isfile(path):
            raise JukeboxError(f"--vocab {path}: not an artist or genre vocabulary file (the "
                               f"original's v2_artist_ids.txt... or Hugging Face's "
                               f"artists.json, genres.json)")
        versions = ("v2", "v3") if name.endswith(".json") else (
            [v for v in ("v2", "v3") if name.startswith(v)] or [None])
        if versions == [None]:
            raise JukeboxError(f"--vocab {path}: the file name does not say v2 or v3 "
                               f"(v2_artist_ids.txt, v3_genre_ids.txt...)")
        for version in versions:
            files.setdefault((kind, version), path)
    return files


def _label_vocab(config, kind: str, files: dict) -> LabelVocab | None:
    """The prior's label names from the vocabulary files (None when none was given)."""
    if not config.labels or not files:
        return None
    version = "v3" if kind == "1b_lyrics" else "v2"  # the original's labellers per model
    tables = {}
    for what, bins in (("artist", config.artist_bins), ("genre", config.genre_bins)):
        path = files.get((what, version))
        if path is None:
            raise JukeboxError(f"--vocab: no {version} {what} vocabulary given ({version}_"
                               f"{what}_ids.txt or {what}s.json); the {kind} prior's ids are "
                               f"the {version} ones")
        try:
            tables[what] = from_names(read_vocab(path, version), version, bins, what, path)
        except (ValueError, UnicodeDecodeError) as e:
            raise JukeboxError(f"--vocab {path}: {e}") from None
    (artists, artist_aliases), (genres, genre_aliases) = tables["artist"], tables["genre"]
    return LabelVocab(artists, genres, version, artist_aliases, genre_aliases)


def plan_import(fmt: str, model: str, paths: Sequence[str],
                vocab_files: Sequence[str] = ()) -> list[RunPlan]:
    """Reads and checks everything `paths` hold for `model` (configs.MODELS), and the label
    vocabularies; writes nothing."""
    files = _vocab_files(vocab_files)
    if model not in configs.MODELS:
        raise JukeboxError(f"--model {model!r}: choose from {', '.join(configs.MODELS)}")
    parts = read_parts(fmt, paths)
    found = {(p.kind, p.level): p for p in parts}
    held = ", ".join(p.what for p in parts)
    wanted = ([("vqvae", None)] if model == "vqvae" else [("prior", 2)]
              if model in configs.TOP_MODELS else
              [k for k in (("prior", 0), ("prior", 1)) if k in found] or [("prior", 0)])
    absent = [key for key in wanted if key not in found]
    if absent:
        needs = "an upsampler" if model == "upsamplers" else _what(absent[0])
        raise JukeboxError(f"--model {model} needs {needs}; the checkpoint(s) hold {held}")
    if model in configs.TOP_MODELS:  # a whole model's save brings the rest along
        wanted = [k for k in (("vqvae", None), ("prior", 0), ("prior", 1)) if k in found] + wanted
    plans = []
    for key in wanted:
        part = found[key]
        if part.kind == "vqvae":
            plans.append(_plan_run("vqvae", part, _config_of(part, "paper")))
            continue
        if part.level < 2:
            config = _config_of(part, configs.UPSAMPLER_PRESETS[part.level])
            plan = _plan_run(f"upsampler_{part.level}", part, config)
            plan.vocab = _label_vocab(config, "upsampler", files)
            plans.append(plan)
            continue
        config = _config_of(part, configs.TOP_MODELS[model])
        kind = configs.prior_kind(config)
        if kind != model:
            raise JukeboxError(f"{part.origin}: a {kind} top-level prior, not --model {model}")
        plan = _plan_run(f"prior_{model}", part, config)
        plan.vocab = _label_vocab(config, kind, files)
        plans.append(plan)
    return plans


def _what(key) -> str:
    kind, level = key
    return "the VQ-VAE" if kind == "vqvae" else (
        "the top-level prior" if level == 2 else f"the level-{level} upsampler")


# -- writing --------------------------------------------------------------------------------

def _arrays(plan: RunPlan):
    """The converted value of each variable, one at a time."""
    converted = {}  # the values a later fill copies (a codebook: small)
    copied = {f[1] for f in (e.fill for e in plan.entries) if isinstance(f, tuple)}
    for entry, key in zip(plan.entries, plan.keys):
        shape, dtype = entry.shape, np.dtype(entry.variable.dtype)
        if key is not None:
            array = entry.convert(plan.part.tensors[key].load())
        elif isinstance(entry.fill, tuple):
            array = converted[entry.fill[1]].astype(dtype)
        else:
            array = (np.ones if entry.fill == "ones" else np.zeros)(shape, dtype)
        if entry.path in copied:
            converted[entry.path] = array
        yield array


def _task_json(plan: RunPlan, plans: list[RunPlan], out_dir: str, fmt: str, model: str) -> dict:
    imported = {"format": fmt, "model": model, "files": [plan.part.origin]}
    if plan.part.kind == "vqvae":
        return {"vqvae": plan.config.to_dict(), "data_dir": None, "global_batch_size": 1,
                "data_stats": {}, "imported": imported}
    from jukebox_tf.prior import lyrics as lyrics_lib

    vqvae = next((p for p in plans if p.part.kind == "vqvae"), None)
    hops = (vqvae.config if vqvae else configs.vqvae_config(None, "openai")).hop_lengths
    config = plan.config
    codes = {"level": config.level, "levels": config.levels, "hop_lengths": list(hops),
             "l_bins": config.l_bins, "sample_rate": config.sample_rate,
             "vqvae_run": os.path.abspath(os.path.join(out_dir, "vqvae")) if vqvae else None,
             **(plan.vocab or LabelVocab()).to_codes_info()}
    return {"prior": config.to_dict(), "codes_dir": None, "global_batch_size": 1,
            "codes": codes, "lyrics_vocab": lyrics_lib.tokenizer_for(config.n_vocab).vocab,
            "imported": imported}


def write_runs(plans: list[RunPlan], out_dir: str, fmt: str, model: str,
               progress: Callable[[str], None] = print) -> list[str]:
    """Writes each plan's run directory under out_dir (temporary name, then renamed)."""
    from jukebox_tf.released.checkpoint_writer import write_checkpoint
    from jukebox_tf.training import run_dir as layout

    targets = [os.path.join(out_dir, p.name) for p in plans]
    exists = [t for t in targets if os.path.exists(t)]
    if exists:
        raise JukeboxError(f"{', '.join(exists)} already exist(s): remove them or choose another "
                           f"--out")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for plan, target in zip(plans, targets):
        tmp = os.path.join(out_dir, f".{plan.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            progress(f"converting {plan.part.what} ({plan.params:,} parameters) from "
                     f"{plan.part.origin}")
            write_checkpoint(layout.checkpoints_dir(tmp), plan.model.variables, _arrays(plan))
            layout.write_json(layout.task_config_path(tmp),
                              _task_json(plan, plans, out_dir, fmt, model))
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written.append(target)
        released = RELEASED_PARAMS.get(plan.name)
        check = "" if released is None else (
            ", as the released model" if plan.params == released else
            f" (the released model has {released:,}: these are other sizes)")
        progress(f"wrote {target}: {plan.params:,} parameters{check}")
    return written


def import_weights(fmt: str, model: str, paths: Sequence[str], out_dir: str,
                   vocab_files: Sequence[str] = (),
                   progress: Callable[[str], None] = print) -> list[str]:
    """Checks, then writes the runs; returns their directories."""
    plans = plan_import(fmt, model, paths, vocab_files)
    if not vocab_files and any(getattr(p.config, "labels", False) for p in plans):
        progress("no --vocab given: the priors' artist and genre ids have no names (sample "
                 "with id 0, or import again with the original's id files)")
    return write_runs(plans, out_dir, fmt, model, progress)

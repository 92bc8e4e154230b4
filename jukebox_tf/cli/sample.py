"""`jukebox-tf sample`: generate music with a trained VQ-VAE, top-level prior and upsamplers."""

from __future__ import annotations

import os
import sys
import time

MODES = ("ancestral", "primed", "continue", "upsample")  # sampling.modes.MODES, without TF

DESCRIPTION = """\
Sample codes level by level with the priors of `jukebox-tf train-prior`, decode them with the
VQ-VAE of `jukebox-tf train-vqvae`, and write OUT_DIR/index.html (audio players, spectrograms,
the settings), OUT_DIR/level_<l>/sample_<i>.wav and spectrograms.png for every level sampled,
and OUT_DIR/codes.npz (what --mode continue|upsample read back).

modes:
  ancestral  the top level from scratch, then each upsampler given the level above
  primed     --prompt audio encoded by the VQ-VAE; every level continues its codes
  continue   --codes from an earlier run continued to --seconds at every level sampled
  upsample   the top level of --codes kept; the lower levels sampled afresh under it

Levels: the top level and every level below it that an upsampler is given for are sampled
and decoded (each from its own codes). Without --upsamplers only the top level is sampled
(fast, but its audio is coarse); with one upsampler (level 1) sampling stops at level 1.
--levels narrows that choice (e.g. --levels 2 to sample the top only although upsamplers are
given). --mode upsample needs --upsamplers but no --prior.

Artist and genre names are looked up, case-insensitively, in the label vocabularies the prior
was trained with (the dataset's artists.txt / genres.txt); an unknown name maps to id 0
(`unknown`) with a warning that lists the known names. Priors trained with --no-labels ignore
them, and --lyrics matters only to a top prior trained with --lyrics."""


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "sample", help="generate audio with trained priors (ancestral, primed, continue, "
        "upsample)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    runs = p.add_argument_group("models")
    runs.add_argument("--vqvae", metavar="RUN",
                      help="run directory of train-vqvae (default: the one the priors' codes "
                           "were encoded with, as `jukebox-tf encode` recorded it)")
    runs.add_argument("--prior", metavar="RUN",
                      help="run directory of the top-level prior (train-prior --level 2); "
                           "not needed for --mode upsample")
    runs.add_argument("--upsamplers", metavar="RUN", nargs="+", default=[],
                      help="run directories of the upsamplers (train-prior --level 1 and "
                           "--level 0), in any order; optional (see above)")
    what = p.add_argument_group("what to sample")
    what.add_argument("--mode", choices=MODES, default="ancestral", help="default ancestral")
    what.add_argument("--artist", metavar="NAME", help="artist name (default: unknown)")
    what.add_argument("--genre", metavar="NAME", action="append", default=[],
                      help="genre (repeat for several; words are split as in ingest)")
    what.add_argument("--lyrics", metavar="TEXT", help="lyrics of the whole track")
    what.add_argument("--lyrics-file", metavar="FILE", help="read the lyrics from FILE")
    what.add_argument("--seconds", type=float,
                      help="length to sample (ancestral, primed, continue; upsample keeps the "
                           "length of the saved codes)")
    what.add_argument("--total-seconds", type=float,
                      help="length of the whole track the timing conditioning is told "
                           "(default: --seconds)")
    what.add_argument("--samples", type=int,
                      help="samples drawn together (default 1; continue/upsample: one per "
                           "sample in --codes)")
    what.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="output folder")
    what.add_argument("--prompt", metavar="FILE", help="primed: audio file to continue")
    what.add_argument("--prompt-seconds", type=float, metavar="P",
                      help="primed: use the first P seconds of --prompt (default: all of it)")
    what.add_argument("--codes", metavar="NPZ",
                      help="continue/upsample: codes.npz written by an earlier `sample`")
    what.add_argument("--levels", type=int, nargs="+", metavar="LEVEL",
                      help="levels to sample, from the top down (default: see above)")
    how = p.add_argument_group("how to sample")
    how.add_argument("--temperature", default="0.99", metavar="T|T2,T1,T0",
                     help="one temperature, or one per level from the top down (default "
                          "0.99); 0 samples greedily")
    how.add_argument("--top-k", type=int, default=0, help="keep the K likeliest codes (0: all)")
    how.add_argument("--top-p", type=float, default=0.0,
                     help="keep the likeliest codes of total probability P (0: all)")
    how.add_argument("--seed", type=int, default=0, help="same seed, same samples")
    how.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                     help="compile the per-token loop with XLA, or not (default: on GPUs, and "
                          "on CPUs for priors up to 200M weights, where it is several times "
                          "faster; the released models' loops take minutes and GBs to compile "
                          "on a CPU). The same tokens either way but where rounding splits a "
                          "near-tie")
    how.add_argument("--stream", action="store_true",
                     help="sample the levels window by window as the lowest needs them and "
                          "write its audio as it comes to OUT_DIR/stream/sample_<i>.partial"
                          ".wav (renamed sample_<i>.wav when done); the same music")
    how.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _warn(message: str) -> None:
    print(f"jukebox-tf sample: warning: {message}", file=sys.stderr)


def parse_temperatures(text: str, levels: int) -> tuple[float, ...]:
    """'0.98' -> that value at every level; 'T2,T1,T0' -> per level, the top level first.
    Returns index = level, as SamplingSettings takes them."""
    from jukebox_tf.errors import JukeboxError

    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise JukeboxError(f"--temperature {text!r}: give a number or {levels} comma-separated "
                           f"numbers (top level first)") from None
    if len(values) == 1:
        values = values * levels
    if len(values) != levels:
        raise JukeboxError(f"--temperature {text!r}: {len(values)} values for {levels} levels "
                           f"(give one, or one per level from the top down)")
    if any(not v >= 0 for v in values):
        raise JukeboxError(f"--temperature {text!r}: temperatures must be >= 0")
    return tuple(reversed(values))


def _check_args(args):
    """Everything that can be checked before any run is read."""
    from jukebox_tf.errors import JukeboxError

    mode = args.mode
    if args.seconds is not None and not args.seconds > 0:
        raise JukeboxError(f"--seconds must be positive, got {args.seconds:g}")
    if mode != "upsample" and args.seconds is None:
        raise JukeboxError(f"--mode {mode} needs --seconds (the length to sample)")
    if args.total_seconds is not None and not args.total_seconds > 0:
        raise JukeboxError(f"--total-seconds must be positive, got {args.total_seconds:g}")
    if args.samples is not None and args.samples < 1:
        raise JukeboxError(f"--samples must be at least 1, got {args.samples}")
    if args.top_k < 0:
        raise JukeboxError(f"--top-k must be >= 0, got {args.top_k}")
    if not 0.0 <= args.top_p <= 1.0:
        raise JukeboxError(f"--top-p must be within [0, 1], got {args.top_p:g}")
    if mode == "primed":
        if not args.prompt:
            raise JukeboxError("--mode primed needs --prompt FILE (the audio to continue)")
        if not os.path.isfile(args.prompt):
            raise JukeboxError(f"--prompt {args.prompt}: no such file")
        if args.prompt_seconds is not None:
            if not args.prompt_seconds > 0:
                raise JukeboxError(f"--prompt-seconds must be positive, got "
                                   f"{args.prompt_seconds:g}")
            if args.prompt_seconds >= args.seconds:
                raise JukeboxError(f"--prompt-seconds {args.prompt_seconds:g} must be shorter "
                                   f"than --seconds {args.seconds:g}")
    elif args.prompt or args.prompt_seconds is not None:
        raise JukeboxError(f"--prompt and --prompt-seconds are for --mode primed, not {mode}")
    if mode in ("continue", "upsample"):
        if not args.codes:
            raise JukeboxError(f"--mode {mode} needs --codes NPZ (the codes.npz of an earlier "
                               f"`jukebox-tf sample`)")
        if not os.path.isfile(args.codes):
            raise JukeboxError(f"--codes {args.codes}: no such file")
    elif args.codes:
        raise JukeboxError(f"--codes is for --mode continue or upsample, not {mode}")
    if args.lyrics is not None and args.lyrics_file:
        raise JukeboxError("give --lyrics or --lyrics-file, not both")


def choose_levels(plan, mode: str, requested) -> list[int]:
    """The levels to sample, top first: see the command's description."""
    from jukebox_tf.errors import JukeboxError

    top = plan.top
    if mode != "upsample" and top not in plan.runs:
        raise JukeboxError(f"--mode {mode} needs --prior (the top-level prior, level {top})")
    if requested is None:
        levels = [top]
        while levels[-1] - 1 in plan.runs:
            levels.append(levels[-1] - 1)
        stray = sorted(set(plan.runs) - set(levels))
        if stray:
            raise JukeboxError(f"--upsamplers: the level-{stray[-1]} upsampler needs the "
                               f"level-{stray[-1] + 1} one above it too (sampling goes down "
                               f"from the top level one level at a time)")
    else:
        levels = sorted(set(requested), reverse=True)
        bad = [level for level in levels if not 0 <= level <= top]
        if bad:
            raise JukeboxError(f"--levels {bad[0]}: the VQ-VAE has levels 0 to {top}")
        if top not in levels:
            levels.insert(0, top)
        if levels != list(range(top, levels[-1] - 1, -1)):
            raise JukeboxError(f"--levels {' '.join(map(str, requested))}: levels must run down "
                               f"from the top level ({top}) without gaps")
        for level in levels:
            if level != top and level not in plan.runs:
                raise JukeboxError(f"--levels: level {level} needs its upsampler (pass its "
                                   f"run to --upsamplers)")
    if mode == "upsample" and len(levels) == 1:
        raise JukeboxError("--mode upsample needs --upsamplers (at least the level-"
                           f"{top - 1} upsampler): it samples the levels below the saved top")
    return levels


def _load_codes(path: str, vq, mode: str, seconds):
    from jukebox_tf.codes.hierarchy import CodeHierarchy, PriorFacts
    from jukebox_tf.errors import JukeboxError
    from jukebox_tf.sampling.outputs import load_codes_npz

    codes, metadata = load_codes_npz(path)
    top = vq.levels - 1
    if top not in codes:
        raise JukeboxError(f"--codes {path}: no top-level codes (codes_l{top}) to {mode}")
    CodeHierarchy.of(vq).check(PriorFacts(sample_rate=metadata.get("sample_rate")),
                               f"--codes {path}", "the file holds")
    for level, c in codes.items():
        if not 0 <= level <= top or c.ndim != 2:
            raise JukeboxError(f"--codes {path}: codes_l{level} does not fit the VQ-VAE's "
                               f"{vq.levels} levels (want int [samples, tokens] per level)")
        if c.size and (c.min() < 0 or c.max() >= vq.l_bins):
            raise JukeboxError(f"--codes {path}: codes_l{level} holds codes outside the VQ-VAE's "
                               f"codebook of {vq.l_bins}")
    if mode == "continue":
        have = codes[top].shape[1] * vq.hop_lengths[top] / vq.sample_rate
        want = int(seconds * vq.sample_rate) // vq.hop_lengths[top]
        if want < codes[top].shape[1]:
            raise JukeboxError(f"--seconds {seconds:g} is shorter than the {have:.2f} s in "
                               f"--codes {path}: continue needs a longer --seconds")
    return codes


def _load_prompt(args, vq):
    from jukebox_tf.audio.decode import AudioError
    from jukebox_tf.audio.load import load_audio
    from jukebox_tf.errors import JukeboxError

    try:
        audio = load_audio(args.prompt, vq.sample_rate, vq.channels,
                           max_seconds=args.prompt_seconds)
    except AudioError as e:
        raise JukeboxError(f"--prompt {args.prompt}: {e}") from None
    seconds = len(audio) / vq.sample_rate
    top_hop = vq.hop_lengths[-1]
    if len(audio) < top_hop:
        raise JukeboxError(f"--prompt {args.prompt}: {seconds:.3f} s is shorter than one "
                           f"top-level code ({top_hop} samples)")
    if args.prompt_seconds is not None and len(audio) < int(args.prompt_seconds * vq.sample_rate):
        raise JukeboxError(f"--prompt {args.prompt} has only {seconds:.2f} s, fewer than "
                           f"--prompt-seconds {args.prompt_seconds:g}")
    if seconds >= args.seconds:
        raise JukeboxError(f"--prompt {args.prompt} has {seconds:.2f} s, not shorter than "
                           f"--seconds {args.seconds:g}: pass a shorter --prompt-seconds")
    return audio


def sample_to_dir(args) -> dict:
    """What `jukebox-tf sample ARGS` does but print its summary: returns write_outputs' paths
    and "codes_arrays" ({level: int32 [B, T]}), "levels" and "timing"."""
    from jukebox_tf.audio.schema import UNKNOWN
    from jukebox_tf.errors import JukeboxError

    _check_args(args)  # before TensorFlow is imported: usage errors come back at once
    from jukebox_tf.sampling.runs import plan_hierarchy

    plan = plan_hierarchy(args.vqvae, args.prior, args.upsamplers)
    vq = plan.vqvae_config
    levels = choose_levels(plan, args.mode, args.levels)
    temperatures = parse_temperatures(args.temperature, vq.levels)
    saved = _load_codes(args.codes, vq, args.mode, args.seconds) if args.codes else None
    prompt = _load_prompt(args, vq) if args.mode == "primed" else None
    lyrics = args.lyrics
    if args.lyrics_file:
        try:
            with open(args.lyrics_file, encoding="utf-8") as f:
                lyrics = f.read()
        except OSError as e:
            raise JukeboxError(f"--lyrics-file {args.lyrics_file}: {e.strerror}") from None
    for note in plan.notes:
        print(f"jukebox-tf sample: {note}", file=sys.stderr)
    for warning in plan.warnings:
        _warn(warning)
    if args.mode == "upsample" and args.seconds is not None:
        _warn("--seconds is ignored by --mode upsample (the saved top level sets the length)")
    used = [plan.runs[level] for level in levels if level in plan.runs]
    if (args.artist or args.genre) and not any(i.config.get("labels") for i in used):
        _warn("the priors were trained without labels: --artist and --genre have no effect")
    if lyrics and args.mode == "upsample":
        _warn("--lyrics has no effect in --mode upsample (only the top-level prior reads them)")
    elif lyrics and not plan.uses_lyrics:
        _warn("the top-level prior was not trained with lyrics: --lyrics has no effect")
    artist_ids, level_genre_ids, label_warnings = plan.level_label_ids(args.artist, args.genre)
    artist_id, genre_ids = artist_ids[plan.top], level_genre_ids[plan.top]  # for the record
    for message in label_warnings:
        _warn(message)

    from jukebox_tf.audio.metadata import genre_words
    from jukebox_tf.sampling.modes import (decode_codes, lyric_alignment_of, sample_codes,
                                           use_xla)
    from jukebox_tf.sampling.outputs import write_outputs
    from jukebox_tf.sampling.runs import load_weights
    from jukebox_tf.sampling.settings import SamplingSettings

    began = time.perf_counter()
    runs = load_weights(plan, [level for level in levels
                               if not (args.mode == "upsample" and level == plan.top)])
    loaded = time.perf_counter()
    windows = {}
    stream = _Stream(args.out, runs.vqvae) if args.stream else None
    priors = runs.priors
    if args.mode == "upsample":
        priors = list(priors)
        priors[plan.top] = None  # the saved top level stands in for it
    sampling = SamplingSettings(
        seconds=args.seconds, total_seconds=args.total_seconds, n_samples=args.samples,
        artist_id=artist_ids, genre_ids=level_genre_ids, lyrics=lyrics,
        temperatures=temperatures, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
        jit_compile="auto" if args.xla is None else args.xla)
    codes = sample_codes(
        args.mode, runs.vqvae, priors, sampling, prompt=prompt,
        prompt_seconds=args.prompt_seconds, codes=saved,
        progress=not (args.quiet or args.stream),
        timings=windows, on_lowest=stream.add if stream else None)
    if stream:
        stream.finish()
    codes = {level: c for level, c in codes.items() if level in levels}
    top_codes = codes[plan.top]
    settings = {
        "mode": args.mode,
        "seconds": round(top_codes.shape[1] * vq.hop_lengths[-1] / vq.sample_rate, 4),
        "samples": int(top_codes.shape[0]), "levels": levels,
        "artist": f"{plan.artists[artist_id] if artist_id else args.artist or UNKNOWN} "
                  f"(id {artist_id})",
        "genres": ", ".join(f"{word} (id {g})" for word, g in zip(genre_words(
            " ".join(args.genre)), genre_ids)),
        "lyrics": lyrics or "", "temperatures (top first)": list(reversed(temperatures)),
        "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
        "xla (levels)": [level for level in levels if priors[level] is not None
                         and use_xla(sampling.jit_compile, priors[level])],
        "vqvae": plan.vqvae_run,
        **{f"level {level} prior": plan.runs[level].run_dir for level in levels
           if level in plan.runs and level in codes and priors[level] is not None},
    }
    if args.total_seconds is not None:
        settings["total_seconds"] = args.total_seconds
    if args.mode == "primed":
        settings.update(prompt=args.prompt, prompt_seconds=round(
            len(prompt) / vq.sample_rate, 4))
    if saved is not None:
        settings["codes"] = args.codes
    alignment, aligning = None, time.perf_counter()
    if args.mode != "upsample" and plan.top in codes:
        alignment = lyric_alignment_of(vq, priors[plan.top], codes[plan.top], sampling)
    decoding = time.perf_counter()
    audio = decode_codes(runs.vqvae, codes)
    # Where the time went (the first window of a level includes tracing its graph).
    settings["timing (s)"] = timing = {
        "load": round(loaded - began, 3),
        "windows": {str(level): [round(t, 3) for t in ts] for level, ts in windows.items()},
        "alignment": round(decoding - aligning, 3),
        "decode": round(time.perf_counter() - decoding, 3)}
    if stream:
        timing["stream"] = round(stream.seconds, 3)  # decoding and writing as it came
        if stream.first_second is not None:
            timing["first_second"] = round(stream.first_second, 3)
    paths = write_outputs(args.out, codes, audio, vq.sample_rate, settings, alignment)
    return {**paths, "codes_arrays": codes, "levels": levels, "timing": timing}


def seconds_since_start() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere since this module was
    imported), so "time to the first sound" includes Python's and TensorFlow's start."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


_IMPORTED = time.perf_counter()


def announce_first_second(command: str, level: int):
    """streaming.AudioStream's on_first_second for `jukebox-tf COMMAND --stream`."""
    def announce(seconds: float, path: str) -> None:
        print(f"jukebox-tf {command}: the first second of level-{level} audio after "
              f"{seconds:.1f} s: {path}", file=sys.stderr, flush=True)
    return announce


class _Stream:
    """--stream: the lowest sampled level's audio, as its codes become final, in
    OUT_DIR/stream/sample_<i>.wav (streaming.AudioStream)."""

    def __init__(self, out_dir: str, vqvae):
        self.folder, self.vqvae = os.path.join(out_dir, "stream"), vqvae
        self.audio = None
        self.seconds = 0.0  # time spent here

    @property
    def first_second(self):
        """Seconds from the process start to 1 s of sample 0's audio."""
        return self.audio.first_second if self.audio else None

    def _open(self, level: int, batch: int):
        from jukebox_tf.sampling.streaming import AudioStream, receptive_field

        config = self.vqvae.config
        self.audio = AudioStream(
            [os.path.join(self.folder, f"sample_{i}.wav") for i in range(batch)],
            lambda codes: self.vqvae.decode(codes, level), config.hop_lengths[level],
            receptive_field(self.vqvae.decoders[level], config.emb_width), config.sample_rate,
            config.channels, seconds_since_start, announce_first_second("sample", level))

    def add(self, level: int, codes) -> None:
        began = time.perf_counter()
        if self.audio is None:
            self._open(level, len(codes))
        self.audio.add(codes)
        self.seconds += time.perf_counter() - began

    def finish(self) -> None:
        began = time.perf_counter()
        if self.audio is not None:
            self.audio.finish()
        self.seconds += time.perf_counter() - began


def run(args) -> int:
    result = sample_to_dir(args)
    codes = result["codes_arrays"]
    top = max(codes)
    n = codes[top].shape[0]
    print(f"sampled {n} sample(s) ({args.mode}) at level(s) "
          f"{', '.join(map(str, result['levels']))} into {args.out}")
    for level in result["levels"]:
        wavs = result["wavs"][level]
        shown = wavs[0] if len(wavs) == 1 else f"{wavs[0]} ... {os.path.basename(wavs[-1])}"
        print(f"  level {level}: {codes[level].shape[1]} codes per sample -> {shown} "
              f"(+ {os.path.basename(result['pngs'][level])})")
    if "alignment" in result:
        print(f"  lyric alignment: {result['alignment']['png']} (+ "
              f"{os.path.basename(result['alignment']['json'])})")
    timing = result["timing"]
    print("  time: load {:.1f} s, {}, decode {:.1f} s".format(timing["load"], ", ".join(
        f"level {level} {sum(ts):.1f} s ({len(ts)} windows)"
        for level, ts in timing["windows"].items()), timing["decode"]))
    print(f"  codes: {result['codes']} (--mode continue|upsample --codes read it back)")
    print(f"  listen: {os.path.abspath(result['html'])}")
    return 0

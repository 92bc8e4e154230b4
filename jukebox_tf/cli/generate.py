"""`jukebox-tf generate`: a clip from a model served over TF Serving's gRPC API.

A client of `jukebox-tf serve` or stock `tensorflow_model_server` serving what `jukebox-tf
export` wrote: it talks to the stock `PredictionServiceStub` only (through `serving/client.py`,
imported when the command runs, so the parser loads neither gRPC nor TensorFlow). Everything
about the model (sample rate, hops, which levels are sampled) comes from its `metadata`
signature. Steps, each a Predict call: [encode the prompt] -> sample the top level -> upsample
each level below -> decode the lowest level; then OUT.wav and OUT.png (its spectrogram).

With --stream the levels below the top come window by window (the `upsample_part`
signature: each level asks the one above only for the windows it reads), and the lowest
level's audio is decoded as its codes become final and appended to OUT.partial.wav, renamed
OUT.wav when complete: the same codes and audio, the first second long before the last.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time

DESCRIPTION = __doc__.split("\n\n", 1)[1]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="generate a clip through a TF Serving (gRPC) server",
        description=DESCRIPTION)
    p.add_argument("--server", default="localhost:8500", metavar="HOST:PORT",
                   help="gRPC address of the server (default localhost:8500)")
    p.add_argument("--model", default="jukebox", help="model name on the server (default "
                   "jukebox)")
    p.add_argument("--version", type=int, metavar="N",
                   help="model version (default: the newest the server serves)")
    p.add_argument("--artist", default="", metavar="NAME", help="artist name or id")
    p.add_argument("--genre", action="append", default=[], metavar="NAME",
                   help="genre (repeat for several)")
    p.add_argument("--lyrics", default="", metavar="TEXT", help="lyrics of the track")
    p.add_argument("--seconds", type=float, required=True, help="length of the clip")
    p.add_argument("--total-seconds", type=float, default=0.0,
                   help="length of the whole track for the timing labels (default: --seconds)")
    p.add_argument("-o", "--out", required=True, metavar="OUT.wav",
                   help="WAV to write; the spectrogram goes beside it as OUT.png")
    p.add_argument("--prompt", metavar="FILE", help="audio to continue (encoded by the server)")
    p.add_argument("--prompt-seconds", type=float, default=None, metavar="P",
                   help="use the first P seconds of --prompt (default: all, up to --seconds)")
    p.add_argument("--temperature", type=float, default=1.0, help="default 1.0 (0: greedy)")
    p.add_argument("--top-k", type=int, default=0, help="default 0 (off)")
    p.add_argument("--top-p", type=float, default=0.0, help="default 0 (off)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds to wait for each call (default 600)")
    p.add_argument("--no-xla", action="store_true",
                   help="use the plain sampling signatures even where the model has XLA "
                        "twins (by default the *_xla ones, falling back to the plain ones "
                        "when the server has XLA off)")
    p.add_argument("--stream", action="store_true",
                   help="write the audio as it comes, to OUT.partial.wav (renamed OUT.wav "
                        "when complete); the same clip")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerateRequest:
    """The clip `jukebox-tf generate` asks a server for; defaults as the command's."""

    seconds: float
    out: str  # the WAV to write (and, with stream, to write as it comes)
    server: str = "localhost:8500"
    model: str = "jukebox"
    version: int | None = None  # None: the newest the server serves
    artist: str = ""
    genre: tuple[str, ...] = ()
    lyrics: str = ""
    total_seconds: float = 0.0  # 0: seconds
    prompt: str | None = None  # an audio file to continue
    prompt_seconds: float | None = None
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    seed: int = 0
    timeout: float = 600.0  # seconds per call
    no_xla: bool = False
    stream: bool = False
    quiet: bool = False

    @classmethod
    def from_args(cls, args) -> GenerateRequest:
        """The request of the command's parsed arguments."""
        values = {field.name: getattr(args, field.name) for field in dataclasses.fields(cls)}
        return cls(**{**values, "genre": tuple(values["genre"])})


def check_args(request: GenerateRequest) -> None:
    from jukebox_tf.errors import JukeboxError

    if not request.seconds > 0:
        raise JukeboxError(f"--seconds must be positive, got {request.seconds}")
    if request.total_seconds < 0:
        raise JukeboxError(f"--total-seconds must not be negative, got "
                           f"{request.total_seconds}")
    if request.temperature < 0:
        raise JukeboxError(f"--temperature must not be negative, got {request.temperature}")
    if request.top_k < 0:
        raise JukeboxError(f"--top-k must not be negative, got {request.top_k}")
    if not 0.0 <= request.top_p <= 1.0:
        raise JukeboxError(f"--top-p must be in [0, 1], got {request.top_p}")
    if request.timeout <= 0:
        raise JukeboxError(f"--timeout must be positive, got {request.timeout}")
    if request.prompt_seconds is not None and request.prompt is None:
        raise JukeboxError("--prompt-seconds needs --prompt")
    if request.prompt is not None:
        if not os.path.isfile(request.prompt):
            raise JukeboxError(f"--prompt: no such file: {request.prompt}")
        if (request.prompt_seconds is not None
                and not 0 < request.prompt_seconds < request.seconds):
            raise JukeboxError(f"--prompt-seconds must be in (0, --seconds={request.seconds}), "
                               f"got {request.prompt_seconds}")
    if ":" not in request.server:
        raise JukeboxError(f"--server must be HOST:PORT, got {request.server!r}")
    if not request.out.lower().endswith(".wav"):
        raise JukeboxError(f"-o must name a .wav file, got {request.out!r}")


class Progress:
    """One line per step on stderr, with a spinner and the elapsed time while a call runs."""

    FRAMES = "|/-\\"

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.spin = enabled and getattr(self.stream, "isatty", lambda: False)()

    def step(self, label: str, fn, *a, **kw):
        if not self.enabled:
            return fn(*a, **kw)
        started = time.monotonic()
        stop = threading.Event()

        def spinner():
            i = 0
            while not stop.wait(0.1):
                self.stream.write(f"\r{self.FRAMES[i % 4]} {label} "
                                  f"{time.monotonic() - started:5.1f}s")
                self.stream.flush()
                i += 1

        thread = threading.Thread(target=spinner, daemon=True) if self.spin else None
        if thread:
            thread.start()
        try:
            result = fn(*a, **kw)
        finally:
            stop.set()
            if thread:
                thread.join()
        self.stream.write(("\r" if self.spin else "")
                          + f"{label}: {time.monotonic() - started:.1f}s\n")
        self.stream.flush()
        return result


def _explain(error, request: GenerateRequest):
    """A ServingError turned into the message the user needs."""
    import grpc

    from jukebox_tf.errors import JukeboxError

    if error.code == grpc.StatusCode.UNAVAILABLE:
        return JukeboxError(f"cannot reach a server at {request.server} (UNAVAILABLE: "
                            f"{error.details}); is `jukebox-tf serve` running there?")
    if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return JukeboxError(f"no answer from {request.server} within --timeout "
                            f"{request.timeout:g} s")
    if error.code == grpc.StatusCode.NOT_FOUND:
        return JukeboxError(f"{error.details} (model {request.model!r} on {request.server})")
    return JukeboxError(f"server refused the request: {error}")


def read_metadata(channel, model, version=None, timeout=None) -> dict:
    """The model's metadata.json, from its `metadata` signature."""
    import json

    from serving import client

    import numpy as np

    out = client.predict(channel, model, {"rows": np.zeros([1], np.int32)},
                         signature="metadata", version=version,
                         output_filter=["metadata_json"], timeout=timeout)
    value = np.asarray(out["metadata_json"]).reshape(-1)[0]  # one row
    return json.loads(value)


XLA_TWINS = {"sample_xla", "upsample_xla"}  # export/module.py's XLA_SUFFIX twins
PAD_CODE = -1  # export/row_groups.py's: codes past a row's length in a batch of several lengths


class SamplingCalls:
    """Predict calls to `sample` and `upsample`, through their XLA twins while the server runs
    them: stock TF Serving answers "XLA compilation disabled" unless started with
    --xla_cpu_compilation_enabled=true, and then the plain signatures (same tokens) serve."""

    def __init__(self, server, model, version, timeout, progress, compiled: bool):
        self.server, self.model, self.version, self.timeout = server, model, version, timeout
        self.progress, self.compiled = progress, compiled

    def call(self, label: str, signature: str, inputs: dict) -> dict:
        from serving import client

        if self.compiled:
            try:
                return self.progress.step(f"{label} (XLA)", client.predict, self.server,
                                          self.model, inputs, signature=signature + "_xla",
                                          version=self.version, timeout=self.timeout)
            except client.ServingError as e:
                if "XLA compilation disabled" not in str(e):
                    raise
                self.compiled = False
                print("jukebox-tf generate: the server has XLA off, so the plain signatures "
                      "sample (slower; the same tokens). Stock TF Serving runs the XLA ones "
                      "with --xla_cpu_compilation_enabled=true.", file=sys.stderr)
        return self.progress.step(label, client.predict, self.server, self.model, inputs,
                                  signature=signature, version=self.version,
                                  timeout=self.timeout)


def generate_clip(server, request: GenerateRequest,
                  progress: Progress | None = None) -> dict:
    """Runs the steps against `server` ("host:port" or a channel): {"audio" [S] or [S, C],
    "sample_rate", "codes": {level: [1, N]}, "level"}. Raises ServingError."""
    import numpy as np

    from serving import client

    progress = progress or Progress(False)
    timeout, model, version = request.timeout, request.model, request.version
    meta = progress.step("metadata", read_metadata, server, model, version, timeout)
    rate, hops = int(meta["sample_rate"]), list(meta["hop_lengths"])
    levels = sorted(meta.get("generated_levels") or meta.get("prior_levels") or [])
    if not levels:
        from jukebox_tf.errors import JukeboxError
        raise JukeboxError(f"model {model!r} has no top prior to sample with")
    top = levels[-1]
    stream = request.stream and len(levels) > 1
    if stream:
        check_streamable(meta, model)
    n_tokens = max(1, math.ceil(request.seconds * rate / hops[top]))
    strings = lambda s: np.array([s.encode()], dtype=object)  # noqa: E731
    row = lambda value, dtype: np.array([value], dtype)  # noqa: E731 - one per sample
    cond = {"artist": strings(request.artist), "genres": strings("; ".join(request.genre)),
            "total_seconds": row(request.total_seconds, np.float32),
            "offset_seconds": row(0.0, np.float32)}
    settings = {"temperature": row(request.temperature, np.float32),
                "top_k": row(request.top_k, np.int32), "top_p": row(request.top_p, np.float32),
                "seed": row(request.seed, np.int64)}
    prime = np.zeros([1, 0], np.int32)
    if request.prompt:
        from jukebox_tf.audio.load import load_audio

        limit = request.seconds if request.prompt_seconds is None else request.prompt_seconds
        audio = load_audio(request.prompt, rate, int(meta.get("channels", 1)),
                           max_seconds=limit)
        audio = audio[None, :, 0] if audio.shape[1] == 1 else audio[None]
        encoded = progress.step(
            "encode prompt", client.predict, server, model,
            {"audio": audio, "sample_rate": row(rate, np.int32)}, signature="encode",
            version=version, output_filter=[f"codes_l{top}"], timeout=timeout)
        prime = encoded[f"codes_l{top}"][:, :n_tokens - 1].astype(np.int32)
    sampling = SamplingCalls(server, model, version, timeout, progress,
                             compiled=not request.no_xla
                             and XLA_TWINS <= set(meta.get("signatures", ())))
    codes = {top: sampling.call(
        f"sample level {top} ({n_tokens} tokens)", "sample",
        {**cond, "lyrics": strings(request.lyrics), "n_tokens": row(n_tokens, np.int32),
         **settings, "prime": prime})["codes"]}
    length = int(round(request.seconds * rate))
    if stream:
        out = open_stream(server, request, meta, levels[0], length)
        codes.update(upsample_by_windows(sampling, levels, codes[top], n_tokens * hops[top],
                                         {**cond, **settings}, hops, out.add))
        out.finish()
        audio = np.concatenate(out.audio[0])
        return {"audio": audio[:, 0] if audio.shape[1] == 1 else audio, "sample_rate": rate,
                "codes": codes, "level": levels[0], "streamed": True}
    above = top
    for level in reversed(levels[:-1]):
        codes[level] = sampling.call(
            f"upsample level {level}", "upsample",
            {"codes": codes[above], "level": row(level, np.int32), **cond, **settings})["codes"]
        above = level
    audio = progress.step(f"decode level {above}", client.predict, server, model,
                          {"codes": codes[above], "level": row(above, np.int32)},
                          signature="decode", version=version, timeout=timeout)["audio"][0]
    return {"audio": audio[:length], "sample_rate": rate, "codes": codes, "level": above}


def upsample_by_windows(sampling, levels, top_codes, n_samples: int, inputs: dict, hops,
                        on_lowest) -> dict:
    """The levels below the top (levels ascending, the top last) through `upsample_part`, the
    lowest first: a level asks the one above for more only when its next window reads codes
    not made yet. Each level's first call asks for one window, and each later one for as many
    codes as the level has (its span doubling), so the first audio comes after a window or
    so of each level, and a clip takes a few calls per level rather than one per window.
    on_lowest(codes [B, T]) after each call that lengthens the lowest level. Returns
    {level: codes [B, n_samples / hop]} below the top."""
    import numpy as np

    from jukebox_tf.errors import JukeboxError

    batch = len(top_codes)
    made = {levels[-1]: top_codes}
    made.update({level: np.zeros([batch, 0], np.int32) for level in levels[:-1]})

    def extend(level: int, needed: int) -> None:
        above = levels[levels.index(level) + 1]
        total = n_samples // hops[level]
        while made[level].shape[1] < min(needed, total):
            have = made[level].shape[1]
            ask = max(2 * have, have + 1)  # one window, then the span doubling
            if level != levels[0]:  # a level above: at least what the level below reads
                ask = max(ask, needed)
            out = sampling.call(
                f"upsample level {level} from {have}/{total}", "upsample_part",
                {"codes": made[above], "level": np.full([batch], level, np.int32),
                 "total_tokens": np.full([batch], total, np.int32), "prime": made[level],
                 "min_tokens": np.full([batch], ask, np.int32), **inputs})
            codes = out["codes"][:, (out["codes"] != PAD_CODE).any(axis=0)]
            if codes.shape[1] > have:
                made[level] = codes
                if level == levels[0]:
                    on_lowest(codes)
                continue
            wanted = int(out["upper_needed"].max())
            if wanted <= made[above].shape[1]:
                raise JukeboxError(f"upsample_part made no level-{level} codes after {have} "
                                   f"with {made[above].shape[1]} codes of level {above}")
            extend(above, wanted)

    extend(levels[0], n_samples // hops[levels[0]])
    for level in levels[1:-1]:  # what the lowest level did not read (none: it reads all)
        extend(level, n_samples // hops[level])
    return {level: made[level] for level in levels[:-1]}


def check_streamable(meta: dict, model: str) -> None:
    """--stream needs upsample_part and the decoders' receptive fields (exports since both)."""
    from jukebox_tf.errors import JukeboxError

    if (not meta.get("decoder_receptive_field")
            or "upsample_part" not in meta.get("signatures", ())):
        raise JukeboxError(f"--stream needs a model exported with the upsample_part signature "
                           f"(model {model!r} has "
                           f"{', '.join(sorted(meta.get('signatures', ())))}): export it again "
                           f"with this version of jukebox-tf, or leave out --stream")


def open_stream(server, request: GenerateRequest, meta: dict, level: int, length: int):
    """streaming.AudioStream writing request.out as level's codes come, decoded by the
    server."""
    import numpy as np

    from jukebox_tf.cli.sample import announce_first_second, seconds_since_start
    from jukebox_tf.sampling.streaming import AudioStream
    from serving import client

    fields = meta["decoder_receptive_field"]
    channels = int(meta.get("channels", 1))

    def decode(codes):
        audio = client.predict(server, request.model, {"codes": codes, "level": np.full(
            [len(codes)], level, np.int32)}, signature="decode", version=request.version,
                               timeout=request.timeout)["audio"]
        return audio[..., None] if audio.ndim == 2 else audio

    announce = None if request.quiet else announce_first_second("generate", level)
    return AudioStream([request.out], decode, int(meta["hop_lengths"][level]),
                       int(fields[level]), int(meta["sample_rate"]), channels,
                       seconds_since_start, announce, length)


def write_outputs(out_path: str, result: dict, write_audio: bool = True) -> tuple[str, str]:
    """OUT.wav (unless a stream wrote it) and OUT.png."""
    import numpy as np

    from jukebox_tf.audio.load import write_wav
    from jukebox_tf.audio.spectrogram import save_spectrograms_png

    audio, rate = np.asarray(result["audio"], np.float32), result["sample_rate"]
    wav = write_wav(out_path, audio, rate) if write_audio else out_path
    png = os.path.splitext(out_path)[0] + ".png"
    mono = audio if audio.ndim == 1 else audio.mean(axis=-1)
    save_spectrograms_png(png, [(f"level {result['level']}", mono)], rate)
    return wav, png


def run(args) -> int:
    request = GenerateRequest.from_args(args)
    check_args(request)
    from serving import client

    progress = Progress(not request.quiet)
    try:
        with client.connect(request.server) as channel:
            result = generate_clip(channel, request, progress)
    except client.ServingError as e:
        raise _explain(e, request) from None
    wav, png = write_outputs(request.out, result, write_audio=not result.get("streamed"))
    print(wav)
    print(png)
    return 0

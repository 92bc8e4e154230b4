"""What a sampling run leaves on disk, every file written atomically (temp name, then rename):

    OUT_DIR/codes.npz                      codes_l0.. int32 [B, T_level] + metadata (JSON)
    OUT_DIR/level_<l>/sample_<i>.wav       each sample decoded from level l alone
    OUT_DIR/level_<l>/spectrograms.png     one panel per sample
    OUT_DIR/index.html                     audio players per level and sample, the settings
    OUT_DIR/alignment.png, alignment.json  the lyric alignment (lyrics models; alignment.py)

`load_codes_npz` reads codes.npz back for `--mode continue|upsample`.
"""

from __future__ import annotations

import html
import io
import json
import os

import numpy as np

from jukebox_tf.audio.load import write_wav
from jukebox_tf.audio.records import AtomicWriter
from jukebox_tf.audio.spectrogram import save_spectrograms_png
from jukebox_tf.errors import JukeboxError

CODES_FILE, INDEX_FILE = "codes.npz", "index.html"
ALIGNMENT_PNG, ALIGNMENT_JSON = "alignment.png", "alignment.json"
_KEY = "codes_l{}"


def save_codes_npz(path: str, codes: dict, metadata: dict | None = None) -> str:
    """codes {level: int [B, T]} and a JSON-able metadata dict -> npz at path."""
    arrays = {_KEY.format(level): np.asarray(c, np.int32) for level, c in codes.items()}
    arrays["metadata"] = np.array(json.dumps(metadata or {}, sort_keys=True))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with AtomicWriter(path) as f:
        f.write(buffer.getvalue())
    return path


def load_codes_npz(path: str) -> tuple[dict[int, np.ndarray], dict]:
    """npz from save_codes_npz -> ({level: int32 [B, T]}, metadata)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            codes = {int(key[len("codes_l"):]): data[key].astype(np.int32)
                     for key in data.files if key.startswith("codes_l")}
            metadata = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
    except (OSError, ValueError) as e:
        raise JukeboxError(f"{path}: not a codes file from `jukebox-tf sample` ({e})") from None
    if not codes:
        raise JukeboxError(f"{path}: holds no codes_l<level> arrays")
    return codes, metadata


def _html_page(settings: dict, levels: dict, codes_file: str,
               alignment: dict | None = None) -> str:
    """levels: {level: {"wavs": [relative paths], "png": relative path}}; alignment: {"png",
    "json": relative paths, "layer", "head"} or None."""
    esc = html.escape
    rows = "\n".join(f"<tr><th>{esc(str(k))}</th><td>{esc(json.dumps(v))}</td></tr>"
                     for k, v in settings.items())
    sections = []
    for level in sorted(levels, reverse=True):
        entry = levels[level]
        players = "\n".join(
            f'<figure><figcaption>sample {i}</figcaption><audio controls preload="none" '
            f'src="{esc(wav)}"></audio></figure>' for i, wav in enumerate(entry["wavs"]))
        sections.append(f'<section><h2>Level {level}</h2>\n{players}\n'
                        f'<img src="{esc(entry["png"])}" alt="level {level} spectrograms">'
                        f'</section>')
    if alignment is not None:
        sections.insert(1, (
            f'<section><h2>Lyric alignment</h2>\n<p>Which lyric characters (up) the top '
            f'level\'s music (across) attends to: layer {alignment["layer"]}, head '
            f'{alignment["head"]} (<a href="{esc(alignment["json"])}">JSON</a>).</p>\n'
            f'<img src="{esc(alignment["png"])}" alt="lyric alignment"></section>'))
    body = "\n".join(sections)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>jukebox-tf samples'
            f'</title>\n<style>body{{font-family:sans-serif;margin:2em}}td,th{{text-align:left;'
            f'padding:2px 8px}}img{{max-width:100%}}figure{{margin:0.5em 0}}</style></head>\n'
            f'<body><h1>jukebox-tf samples</h1>\n<table>{rows}</table>\n{body}\n'
            f'<p>Codes: <a href="{esc(codes_file)}">{esc(codes_file)}</a></p></body></html>\n')


def write_outputs(out_dir: str, codes: dict, audio: dict, sample_rate: int,
                  settings: dict | None = None, alignment: dict | None = None) -> dict:
    """Writes the files above for codes {level: int [B, T]} and their decoded audio
    {level: float [B, samples, channels]}; settings (JSON-able) go into the page and the
    codes' metadata; alignment: modes.lyric_alignment_of's dict, or None. Returns {"codes":
    path, "html": path, "wavs": {level: [paths]}, "pngs": {level: path}} and with an
    alignment "alignment": {"png": path, "json": path}."""
    settings = dict(settings or {})
    os.makedirs(out_dir, exist_ok=True)
    written = {"wavs": {}, "pngs": {}}
    levels = {}
    for level in sorted(audio, reverse=True):
        folder = f"level_{level}"
        wavs = [write_wav(os.path.join(out_dir, folder, f"sample_{i}.wav"), x, sample_rate)
                for i, x in enumerate(audio[level])]
        png = save_spectrograms_png(
            os.path.join(out_dir, folder, "spectrograms.png"),
            [(f"level {level}, sample {i}", x) for i, x in enumerate(audio[level])],
            sample_rate)
        written["wavs"][level], written["pngs"][level] = wavs, png
        levels[level] = {"wavs": [os.path.relpath(w, out_dir) for w in wavs],
                         "png": os.path.relpath(png, out_dir)}
    metadata = {"sample_rate": sample_rate, "settings": settings}
    written["codes"] = save_codes_npz(os.path.join(out_dir, CODES_FILE), codes, metadata)
    shown = None
    if alignment is not None:
        written["alignment"] = _write_alignment(out_dir, alignment)
        shown = {**{k: os.path.relpath(v, out_dir) for k, v in written["alignment"].items()},
                 "layer": alignment["layer"], "head": alignment["head"]}
    page = _html_page(settings, levels, CODES_FILE, shown)
    written["html"] = os.path.join(out_dir, INDEX_FILE)
    with AtomicWriter(written["html"]) as f:
        f.write(page.encode("utf-8"))
    return written


def _write_alignment(out_dir: str, alignment: dict) -> dict:
    from jukebox_tf.sampling.alignment import alignment_json, render_alignment_png

    args = alignment["weights"], alignment["texts"], alignment["seconds_per_token"]
    paths = {"png": os.path.join(out_dir, ALIGNMENT_PNG),
             "json": os.path.join(out_dir, ALIGNMENT_JSON)}
    with AtomicWriter(paths["png"]) as f:
        f.write(render_alignment_png(*args))
    with AtomicWriter(paths["json"]) as f:
        f.write(alignment_json(*args, alignment["layer"], alignment["head"]).encode("utf-8"))
    return paths

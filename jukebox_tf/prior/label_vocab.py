"""The artist and genre names a prior's label ids stand for, and how a name a user types becomes
one of them: one owner for the library's lookups (sampling) and the SavedModel's (in graph).

    vocab = LabelVocab.from_codes_info(task_json["codes"])
    vocab.artist_id("Frank Sinatra")       # 1234, or None when unknown
    vocab.genre_ids("Jazz; vocal")         # [("jazz", 57), ("vocal", None)]: per genre key

Naming schemes:
- "words" (priors trained here; ingest's vocabularies): names lower-cased; genre text split
  into words at spaces and , ; / | (as ingest splits it).
- "v2" (the released 5B models and the upsamplers of every release): the original's names,
  lower-cased with every run of characters outside [a-z0-9] made one '_' and trimmed
  ("Frank Sinatra" -> frank_sinatra); a genre is split into its words at those runs.
- "v3" (the released 1B lyrics model): lower-cased and trimmed; a genre is one name.
Several names may stand for one id (aliases: the released files map 'various' and '' to 0).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Sequence

from jukebox_tf.audio.schema import GENRE_SEPARATORS, UNKNOWN

SCHEMES = ("words", "v2", "v3")
# Every character str.isspace() accepts. The graph's string ops (tf.strings.strip, RE2's \s,
# tf.strings.split) know only ASCII whitespace, so both sides first make each of these a plain
# space: a name with a no-break or ideographic space then finds one id locally and served.
SPACES = "[\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _plain(text: str) -> str:
    return re.sub(SPACES, " ", text).strip().lower()


def artist_key(name: str, scheme: str) -> str:
    name = _plain(name)
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_") if scheme == "v2" else name


def genre_keys(text: str, scheme: str) -> list[str]:
    """The vocabulary keys a genre text holds, in order ([] for empty text)."""
    text = _plain(text)
    if scheme == "v2":
        return [w for w in re.sub(r"[^a-z0-9]+", "_", text).split("_") if w]
    if scheme == "v3":
        return [text] if text else []
    return [w for w in re.split(GENRE_SEPARATORS, text) if w]


def artist_key_tf(names, scheme: str):
    """`artist_key` in graph: string [B] -> string [B]."""
    import tensorflow as tf

    key = _plain_tf(names)
    if scheme == "v2":
        key = _trim_underscores(tf.strings.regex_replace(key, "[^a-z0-9]+", "_"))
    return key


def genre_keys_tf(text, scheme: str):
    """`genre_keys` in graph: string [B] -> ragged string [B, None]."""
    import tensorflow as tf

    text = _plain_tf(text)
    if scheme == "v3":
        return tf.ragged.boolean_mask(tf.expand_dims(text, 1), tf.expand_dims(text != "", 1))
    if scheme == "v2":
        text = _trim_underscores(tf.strings.regex_replace(text, "[^a-z0-9]+", "_"))
        return tf.strings.split(tf.strings.regex_replace(text, "_", " "))
    return tf.strings.split(tf.strings.strip(tf.strings.regex_replace(text, GENRE_SEPARATORS,
                                                                      " ")))


def _plain_tf(text):
    import tensorflow as tf

    text = tf.strings.strip(tf.strings.regex_replace(text, SPACES, " "))
    return tf.strings.lower(text, encoding="utf-8")


def _trim_underscores(key):
    import tensorflow as tf

    return tf.strings.regex_replace(key, "^_+|_+$", "")


@dataclasses.dataclass(frozen=True)
class LabelVocab:
    artists: tuple[str, ...] = (UNKNOWN,)  # name of each id (id 0 = unknown; '' = unnamed)
    genres: tuple[str, ...] = (UNKNOWN,)
    scheme: str = "words"
    artist_aliases: tuple[tuple[str, int], ...] = ()  # more names of ids, (name, id)
    genre_aliases: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"label naming scheme {self.scheme!r} is not one of {SCHEMES}")

    def artist_table(self) -> dict[str, int]:
        """key -> id, as `artist_key` makes keys; the first of equal keys wins."""
        return _table(self.artists, self.artist_aliases, lambda n: artist_key(n, self.scheme))

    def genre_table(self) -> dict[str, int]:
        """key -> id of each genre name (a word, or for v3 a whole genre)."""
        return _table(self.genres, self.genre_aliases, lambda n: artist_key(n, self.scheme))

    def artist_id(self, name: str) -> int | None:
        return self.artist_table().get(artist_key(name, self.scheme))

    def genre_ids(self, text: str) -> list[tuple[str, int | None]]:
        """(key, id or None when unknown) of each genre key of `text`."""
        table = self.genre_table()
        return [(key, table.get(key)) for key in genre_keys(text, self.scheme)]

    def extended(self, artists: Sequence[str], genres: Sequence[str]
                 ) -> tuple["LabelVocab", list[int], list[int]]:
        """(this vocabulary with the names it does not know appended, each of `artists`' id
        in it, each of `genres`' id in it): `artists` and `genres` are a dataset's names by
        id (id 0 = unknown, which stays 0). A name this vocabulary knows, by its scheme's
        keys, keeps its id; a new name gets the next id (one per key)."""
        key = functools.partial(artist_key, scheme=self.scheme)
        new_artists, artist_ids = _extend(self.artists, self.artist_table(), artists, key)
        new_genres, genre_ids = _extend(self.genres, self.genre_table(), genres, key)
        return (dataclasses.replace(self, artists=new_artists, genres=new_genres), artist_ids,
                genre_ids)

    def to_codes_info(self) -> dict:
        """The fields a prior run's task.json `codes` holds."""
        return {"artists": list(self.artists), "genres": list(self.genres),
                "label_names": self.scheme,
                "label_aliases": {"artists": dict(self.artist_aliases),
                                  "genres": dict(self.genre_aliases)}}

    @classmethod
    def from_codes_info(cls, codes: dict) -> "LabelVocab":
        aliases = codes.get("label_aliases") or {}
        return cls(tuple(codes.get("artists") or (UNKNOWN,)),
                   tuple(codes.get("genres") or (UNKNOWN,)), codes.get("label_names", "words"),
                   tuple((k, int(v)) for k, v in (aliases.get("artists") or {}).items()),
                   tuple((k, int(v)) for k, v in (aliases.get("genres") or {}).items()))


def _extend(names: Sequence[str], table: dict[str, int], more: Sequence[str], key
            ) -> tuple[tuple[str, ...], list[int]]:
    names, ids = list(names), [0]
    for name in more[1:]:
        if key(name) not in table:
            table[key(name)] = len(names)
            names.append(name)
        ids.append(table[key(name)])
    return tuple(names), ids[:len(more)]


def _table(names: Sequence[str], aliases, key) -> dict[str, int]:
    table: dict[str, int] = {}
    for i, name in list(enumerate(names)) + [(i, n) for n, i in aliases]:
        if name or i == 0:
            table.setdefault(key(name), i)
    return table


def read_id_file(path: str) -> dict[str, int]:
    """The original's jukebox/data/ids/*.txt: a `name;id` line per name (several names may
    share an id; the last line of a repeated name wins, as its loader does)."""
    table: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            name, sep, value = line.rpartition(";")
            if not sep or not value.strip().lstrip("-").isdigit():
                raise ValueError(f"{path}, line {number}: not `name;id`: {line!r:.80}")
            table[name.lower()] = int(value)
    return table


def from_names(table: dict[str, int], scheme: str, bins: int, what: str,
               source: str) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """(names by id, aliases) of a name -> id table for an embedding of `bins` rows."""
    too_big = sorted({i for i in table.values() if not 0 <= i < bins})
    if too_big:
        raise ValueError(f"{source}: {what} ids up to {max(too_big)}, but the model's {what} "
                         f"embedding has {bins} rows (a vocabulary of another model?)")
    names = [UNKNOWN] + [""] * (bins - 1)
    aliases = []
    for name, i in table.items():
        if not names[i]:
            names[i] = name
        elif name != names[i]:
            aliases.append((name, i))
    return tuple(names), tuple(aliases)


def read_vocab(path: str, version: str) -> dict[str, int]:
    """name -> id from the original's id file (`v2_artist_ids.txt`...) or Hugging Face's
    artists.json / genres.json, which holds both versions (its v2 names end in '.v2')."""
    import json

    if not path.endswith(".json"):
        return read_id_file(path)
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
    if version == "v2":
        return {k[:-3]: int(v) for k, v in table.items() if k.endswith(".v2")}
    return {k: int(v) for k, v in table.items() if not k.endswith(".v2")}

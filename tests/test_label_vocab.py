"""Label names: the library's lookups and the SavedModel's in-graph ones make the same keys in
every naming scheme, so a name finds the same id when sampling locally and when served."""

import pytest
import tensorflow as tf

from jukebox_tf.prior.label_vocab import (LabelVocab, artist_key, artist_key_tf, from_names,
                                          genre_keys, genre_keys_tf)

NAMES = ["Frank Sinatra", "  June & the Moths ", "Ana Luísa Prado", "STRASSE", "Beyoncé",
         "AC/DC", "__x__", "", "hip-hop; Synth pop/rock", "Singer-Songwriter", "a,b|c  d"]


@pytest.mark.parametrize("scheme", ["words", "v2", "v3"])
def test_graph_and_python_make_the_same_keys(scheme):
    names = tf.constant(NAMES)
    assert [k.decode() for k in artist_key_tf(names, scheme).numpy()] == [
        artist_key(n, scheme) for n in NAMES]
    assert [[k.decode() for k in row] for row in genre_keys_tf(names, scheme).to_list()] == [
        genre_keys(n, scheme) for n in NAMES]


def test_schemes():
    assert artist_key("  Ana Luísa Prado ", "v2") == "ana_lu_sa_prado"  # as the original's norm
    assert artist_key("Ana Luísa Prado", "v3") == artist_key("Ana Luísa Prado", "words") == \
        "ana luísa prado"
    assert genre_keys("Hip Hop; Soul", "v2") == ["hip", "hop", "soul"]
    assert genre_keys("Hip Hop", "v3") == ["hip hop"]
    assert genre_keys("Synth-Pop; ambient", "words") == ["synth-pop", "ambient"]


def test_names_by_id_keep_the_first_name_and_aliases_the_rest():
    names, aliases = from_names({"unknown": 0, "various": 0, "": 0, "b": 2, "b2": 2, "a": 1},
                                "v2", 4, "artist", "f")
    assert names == ("unknown", "a", "b", "")
    assert aliases == (("various", 0), ("", 0), ("b2", 2))
    vocab = LabelVocab(names, ("unknown",), "v2", aliases)
    assert [vocab.artist_id(n) for n in ("B2", "various", "A", "nobody")] == [2, 0, 1, None]
    genres = LabelVocab(("unknown",), ("unknown", "hip", "hop"), "v2")
    assert genres.genre_ids("Hip-Hop polka") == [("hip", 1), ("hop", 2), ("polka", None)]
    assert LabelVocab.from_codes_info(vocab.to_codes_info()) == vocab
    with pytest.raises(ValueError, match="ids up to 7, but the model's artist embedding has 4 "):
        from_names({"x": 7}, "v2", 4, "artist", "f")


def test_unicode_spaces_make_the_same_keys_locally_and_in_graph():
    """The graph's string ops know only ASCII whitespace; names from scraped metadata often
    hold no-break or ideographic spaces, which must not send a served request to another id."""
    import re
    import sys

    from jukebox_tf.prior.label_vocab import SPACES

    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert {c for c in spaces if re.fullmatch(SPACES, c)} == spaces
    names = ["Frank\u00a0Sinatra", "\u3000Kyu Sakamoto\u3000", "x\u2028y", "pop\u00a0rock\u000b",
             "\u1680June\u202f&\u205fthe Moths\u0085", "\u001cjazz\u001f"]
    for scheme in ("words", "v2", "v3"):
        got = [k.decode() for k in artist_key_tf(tf.constant(names), scheme).numpy()]
        assert got == [artist_key(n, scheme) for n in names]
        got = [[k.decode() for k in row]
               for row in genre_keys_tf(tf.constant(names), scheme).to_list()]
        assert got == [genre_keys(n, scheme) for n in names]
    vocab = LabelVocab(("unknown", "frank sinatra"), ("unknown", "pop", "rock"))
    assert vocab.artist_id("Frank\u00a0Sinatra") == vocab.artist_id(" frank sinatra") == 1
    assert vocab.genre_ids("pop\u3000rock") == [("pop", 1), ("rock", 2)]

import numpy as np
import pytest

from jukebox_tf.audio.chunking import Chunker


def chunk_stream(x, chunk, hop, min_frames, block):
    c = Chunker(chunk, hop, min_frames)
    out = []
    for i in range(0, len(x), block):
        out += [(o, a.copy()) for o, a in c.push(x[i:i + block])]
    return out + [(o, a.copy()) for o, a in c.finish()]


def reference(n, chunk, hop, min_frames):
    starts = list(range(0, max(n - chunk, -1) + 1, hop)) if n >= chunk else []
    covered = starts[-1] + chunk if starts else 0
    if n > covered:
        tail = starts[-1] + hop if starts else 0
        if n - covered >= min_frames or not starts:
            starts.append(tail)
    return [(s, min(chunk, n - s)) for s in starts]


@pytest.mark.parametrize("n,chunk,hop,min_frames,block", [
    (1000, 100, 100, 1, 37), (1000, 100, 50, 1, 333), (1050, 100, 100, 60, 64),
    (1050, 100, 100, 40, 64), (30, 100, 100, 60, 7), (1000, 100, 30, 10, 1000),
    (100, 100, 100, 1, 3)])
def test_chunks_match_reference_offsets_and_content(n, chunk, hop, min_frames, block):
    x = np.arange(n, dtype=np.float32)[:, None]
    got = chunk_stream(x, chunk, hop, min_frames, block)
    assert [(o, len(a)) for o, a in got] == reference(n, chunk, hop, min_frames)
    for offset, audio in got:
        np.testing.assert_array_equal(audio[:, 0], x[offset:offset + len(audio), 0])


def test_hop_larger_than_chunk_is_refused():
    with pytest.raises(ValueError, match="hop"):
        Chunker(100, 101)

"""Rows of one request that need different work (another `level`, `n_tokens`, `seconds`...)
run one group after another, in graph, and each group's outputs are written back to its rows,
padded to the longest row: codes with PAD_CODE, audio with 0 (export/README.md, "Signatures").
"""

from __future__ import annotations

import tensorflow as tf

PAD_CODE = -1  # codes past a row's own length (rows padded to the longest of a batch)


def longest_row(lengths) -> tf.Tensor:
    """The largest of lengths int32 [B] (0 for no rows)."""
    return tf.reduce_max(tf.concat([lengths, [0]], 0))


def run_in_groups(values, run, outputs: dict) -> dict:
    """Rows whose `values` (int32 [B], or [B, K]: equal rows) are equal run together, one
    group after another: run(rows int32 [b], value) -> {name: tensor [b, ...]}. outputs:
    {name: (tensor [B, ...] filled with the padding, padding)}; each group's results are
    written to their rows, outputs and results padded along dimension 1 to the longer."""
    groups = tf.raw_ops.UniqueV2(x=values, axis=[0]).y

    def body(g, outs):
        value = groups[g]
        same = tf.equal(values, value)
        if same.shape.rank > 1:
            same = tf.reduce_all(same, axis=1)
        rows = tf.cast(tf.where(same)[:, 0], tf.int32)
        results = run(rows, value)
        new = {}
        for name, out in outs.items():
            part, padding = results[name], outputs[name][1]
            if part.shape.rank > 1:
                width = tf.maximum(tf.shape(out)[1], tf.shape(part)[1])
                out, part = (tf.pad(x, [[0, 0], [0, width - tf.shape(x)[1]]]
                                    + [[0, 0]] * (x.shape.rank - 2), constant_values=padding)
                             for x in (out, part))
            # (The scatter refuses an empty output, as a level with no new codes gives.)
            new[name] = tf.cond(
                tf.size(out) > 0,
                lambda out=out, part=part: tf.tensor_scatter_nd_update(out, rows[:, None],
                                                                      part),
                lambda out=out: tf.identity(out))
        return g + 1, new

    init = {name: out for name, (out, _) in outputs.items()}
    invariants = {name: tf.TensorShape([None] * out.shape.rank) for name, out in init.items()}
    return tf.while_loop(lambda g, _: g < tf.shape(groups)[0], body,
                         (tf.constant(0), init),
                         shape_invariants=(tf.TensorShape([]), invariants))[1]

"""A SavedModel version in a tf.compat.v1.Session of its own, loaded as C++ TF Serving loads
it: the graph imported, the variables restored a group at a time, the init op run with the
assets' paths; and which signatures need XLA."""

from __future__ import annotations

import logging
import math
import os
from typing import NamedTuple

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from jukebox_tf.training.checkpoints import reading_checkpoint, release_freed_memory

# TF's signature keys of ops to run rather than serve (saved_model/constants.py; TF's public
# API does not export them).
INIT_OP_KEY = "__saved_model_init_op"
OP_SIGNATURES = (INIT_OP_KEY, "__saved_model_train_op")
DAMAGED_ADVICE = "Export this version again."
RESTORE_GROUP_BYTES = 64 << 20
RESTORE_BODY_OPS = {"RestoreV2", "Const", "Identity", "AssignVariableOp", "NoOp"}
XLA_ATTR = "_XlaMustCompile"  # what tf.function(jit_compile=True) sets on its function
log = logging.getLogger("serving")


def _session_config() -> tf.compat.v1.ConfigProto:
    """The process's thread pools (tf.config.threading), and soft placement: the import clears
    the devices the export was traced on."""
    return tf.compat.v1.ConfigProto(
        allow_soft_placement=True,
        intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads())


def open_session(path: str, meta_graph) -> tf.compat.v1.Session:
    """The version as C++ TF Serving loads it: `meta_graph` imported into a graph of its own
    (its library functions stay FunctionDefs; TF2's Python loader rebuilds each as a Python
    graph, 5.5 GB and 40 s for the full-size hierarchy), the variables restored one at a time,
    then the init op run, as SavedModel loaders order them."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
    session = tf.compat.v1.Session(graph=graph, config=_session_config())
    try:
        restore_each_variable(session, meta_graph, os.path.join(
            path, tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.VARIABLES_FILENAME))
        init_op = _init_op(meta_graph)
        if init_op is not None:
            session.run([init_op], feed_dict=_asset_feeds(path, meta_graph))
    except BaseException:
        session.close()  # frees what was restored now, not when the garbage collector runs
        raise
    graph.finalize()  # nothing may add to the graph that requests run in
    return session


def _init_op(meta_graph) -> str | None:
    """The op a loader runs once the variables are restored, found where TF's loader_impl
    (get_init_op) looks: the init op signature, else the main op or legacy init op collection."""
    if INIT_OP_KEY in meta_graph.signature_def:
        return meta_graph.signature_def[INIT_OP_KEY].outputs[INIT_OP_KEY].name
    for key in (tf.compat.v1.saved_model.MAIN_OP_KEY,
                tf.compat.v1.saved_model.LEGACY_INIT_OP_KEY):
        if key in meta_graph.collection_def:
            names = meta_graph.collection_def[key].node_list.value
            if len(names) != 1:
                raise ValueError(f"expected one SavedModel init op in collection {key!r}, "
                                 f"found {len(names)}: {list(names)}")
            return names[0]
    return None


def _asset_feeds(path: str, meta_graph) -> dict[str, str]:
    """The init op's feeds, as TF's loader_impl (get_asset_tensors) makes them: each asset
    tensor gets its file's path in this version's assets/ (the path it was exported from is
    gone). TF1 exports list their assets in a collection instead."""
    assets = list(meta_graph.asset_file_def)
    if not assets and tf.compat.v1.saved_model.ASSETS_KEY in meta_graph.collection_def:
        for packed in meta_graph.collection_def[tf.compat.v1.saved_model.ASSETS_KEY].any_list.value:
            assets.append(meta_graph_pb2.AssetFileDef())
            packed.Unpack(assets[-1])
    folder = os.path.join(path, tf.saved_model.ASSETS_DIRECTORY)
    return {asset.tensor_info.name: os.path.join(folder, asset.filename) for asset in assets}


class VariableRestore(NamedTuple):
    key: str  # in the checkpoint
    slice: str  # RestoreV2's shape_and_slices entry ("" for a whole tensor)
    dtype: int  # a DataType enum
    handle: str  # the variable's resource tensor in the main graph


def restore_each_variable(session: tf.compat.v1.Session, meta_graph, prefix: str):
    """Restores the variables of `session` from checkpoint `prefix` a few at a time (about
    RESTORE_GROUP_BYTES each), so that the peak holds the model and one group: the saver's own
    restore op reads every variable with one RestoreV2 before it assigns any, which is a
    second copy of the model wherever the variables cannot adopt the restored buffers (on
    another device, say). Where its function is not laid out as `variable_restores` expects,
    that restore op runs instead. A damaged file raises JukeboxError naming it."""
    saver = meta_graph.saver_def
    if not saver.restore_op_name:
        return  # nothing to restore (a model without variables)
    feed = {saver.filename_tensor_name: prefix}
    restores = variable_restores(meta_graph)
    with reading_checkpoint(prefix, DAMAGED_ADVICE):
        if restores is None:
            log.warning("%s: the restore op's layout is not known; restoring every variable "
                        "at once (up to twice the model's size at the peak)", prefix)
            session.run(saver.restore_op_name, feed)
            return
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    with session.graph.as_default(), tf.name_scope("restore_each_variable"):
        prefix_tensor = session.graph.get_tensor_by_name(saver.filename_tensor_name)
        assigned = []
        for group in _groups(restores, shapes):
            # Each group is read once the one before is assigned, all in one session.run: a
            # run per group built an executor per group, each pruning and optimizing the
            # whole graph (the full-size hierarchy was still restoring after 3 minutes).
            with tf.control_dependencies(assigned):
                assigned = [_assign(session.graph, prefix_tensor, r) for r in group]
    with reading_checkpoint(prefix, DAMAGED_ADVICE):
        session.run(assigned, feed)
    release_freed_memory()


def _assign(graph: tf.Graph, prefix: tf.Tensor, restore: VariableRestore) -> tf.Operation:
    [value] = tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[restore.key],
                                   shape_and_slices=[restore.slice], dtypes=[restore.dtype])
    return tf.raw_ops.AssignVariableOp(resource=graph.get_tensor_by_name(restore.handle),
                                       value=value)


def _groups(restores: list[VariableRestore], shapes: dict):
    """`restores` in runs of about RESTORE_GROUP_BYTES (a larger variable alone), read in
    parallel within a run."""
    group, size = [], 0
    for restore in restores:
        # A key missing from the file counts as nothing here; RestoreV2 will say it is missing.
        n = math.prod(shapes.get(restore.key, [])) * tf.as_dtype(restore.dtype).size
        if group and size + n > RESTORE_GROUP_BYTES:
            yield group
            group, size = [], 0
        group.append(restore)
        size += n
    if group:
        yield group


def variable_restores(meta_graph) -> list[VariableRestore] | None:
    """What the saver's restore op does, variable by variable; None when its function is laid
    out otherwise than a TF2 export's `_traced_restore`: a call of a function of RestoreV2
    (keys and slices from Consts), Identity and AssignVariableOp nodes only, each
    AssignVariableOp taking a resource argument and a RestoreV2 output. A resource argument's
    variable is the call's input at the argument's position. (Outputs that nothing assigns,
    such as the object graph's, need no restoring.)"""
    graph_def = meta_graph.graph_def
    call = next((n for n in graph_def.node
                 if n.name == meta_graph.saver_def.restore_op_name), None)
    body = None
    if call is not None and "f" in call.attr:
        body = next((f for f in graph_def.library.function
                     if f.signature.name == call.attr["f"].func.name), None)
    if body is None or any(n.op not in RESTORE_BODY_OPS for n in body.node_def):
        return None
    args = [arg.name for arg in body.signature.input_arg]
    inputs = [ref for ref in call.input if not ref.startswith("^")]
    if len(args) != len(inputs):
        return None
    outer = dict(zip(args, inputs))
    nodes = {n.name: n for n in body.node_def}

    def source(ref: str):
        """(reference, node) of what `ref` forwards through Identity nodes; node None for an
        argument of the function."""
        node = nodes.get(ref.split(":")[0])
        while node is not None and node.op == "Identity":
            ref = node.input[0]
            node = nodes.get(ref.split(":")[0])
        return ref, node

    def const(ref: str):
        _, node = source(ref)
        return None if node is None or node.op != "Const" else tf.make_ndarray(
            node.attr["value"].tensor)

    names = {}  # RestoreV2 node -> (keys, slices): read once, not once per variable
    restores = []
    for node in body.node_def:
        if node.op != "AssignVariableOp":
            continue
        (handle, _), (value, restore) = source(node.input[0]), source(node.input[1])
        if handle not in outer or restore is None or restore.op != "RestoreV2":
            return None
        index = int(value.rsplit(":", 1)[1])
        if restore.name not in names:
            names[restore.name] = const(restore.input[1]), const(restore.input[2])
        keys, slices = names[restore.name]
        if keys is None or slices is None:
            return None
        ref = outer[handle]
        restores.append(VariableRestore(
            keys[index].decode(), slices[index].decode(), restore.attr["dtypes"].list.type[index],
            ref if ":" in ref else ref + ":0"))
    return restores


def compiled_signatures(meta_graph, names) -> frozenset[str]:
    """The signatures among `names` whose computation reaches a function compiled with XLA
    (jit_compile=True: the attr `_XlaMustCompile`), which stock TF Serving fails when XLA is
    off. From each output's node: main-graph inputs, then the functions called (an op naming
    one, or attrs such as `f`, `then_branch`, `body`) and every node in their bodies."""
    graph_def = meta_graph.graph_def
    nodes = {n.name: n for n in graph_def.node}
    library = {f.signature.name: f for f in graph_def.library.function}
    compiles: dict[str, bool] = {}

    def must_compile(attrs) -> bool:
        return XLA_ATTR in attrs and attrs[XLA_ATTR].b  # `in` first: [] would add the key

    def calls(node):
        if node.op in library:
            yield node.op
        for value in node.attr.values():
            kind = value.WhichOneof("value")
            if kind == "func":
                yield value.func.name
            elif kind == "list":
                yield from (f.name for f in value.list.func)

    def node_compiles(node) -> bool:
        return must_compile(node.attr) or any(function_compiles(f) for f in calls(node))

    def function_compiles(name: str) -> bool:
        if name not in compiles:
            compiles[name] = False  # a function that (indirectly) calls itself adds nothing
            fdef = library.get(name)
            compiles[name] = fdef is not None and (must_compile(fdef.attr) or any(
                node_compiles(n) for n in fdef.node_def))
        return compiles[name]

    def signature_compiles(signature_def) -> bool:
        pending = [_node_name(t.name) for t in signature_def.outputs.values()]
        seen = set(pending)
        while pending:
            node = nodes.get(pending.pop())
            if node is None:
                continue
            if node_compiles(node):
                return True
            for ref in node.input:
                if _node_name(ref) not in seen:
                    seen.add(_node_name(ref))
                    pending.append(_node_name(ref))
        return False

    return frozenset(n for n in names if signature_compiles(meta_graph.signature_def[n]))


def _node_name(ref: str) -> str:
    """The node of a main-graph reference ("^node", "node", "node:1")."""
    return ref.lstrip("^").split(":")[0]

"""Reading a local pipeline run back from ML Metadata: what each component did, what it
wrote, and where an artifact came from.

    with open_store(root) as store:
        run = last_run(store)            # {"VQVAETrainer": NodeRun(state, outputs), ...}
        upstream(store, artifact_id)     # every artifact it was derived from
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

NODE_CONTEXT = "node"
RUN_CONTEXT = "pipeline_run"
_STATES = metadata_store_pb2.Execution.State


@dataclasses.dataclass
class NodeRun:
    execution_id: int
    state: str  # COMPLETE, CACHED, FAILED, RUNNING, ...
    outputs: dict[str, list[metadata_store_pb2.Artifact]]
    inputs: dict[str, list[metadata_store_pb2.Artifact]]

    def output(self, key: str) -> metadata_store_pb2.Artifact:
        return self.outputs[key][0]


@contextlib.contextmanager
def open_store(root_or_sqlite: str):
    path = root_or_sqlite
    if os.path.isdir(path):
        from pipeline.local_runner import metadata_path

        path = metadata_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no ML Metadata database (has the pipeline run?)")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    yield metadata_store.MetadataStore(config)


def _by_key(events, artifacts_by_id) -> dict[str, list]:
    out: dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        out.setdefault(key, []).append(artifacts_by_id[event.artifact_id])
    return out


def last_run(store) -> dict[str, NodeRun]:
    """Component id -> NodeRun of the most recent pipeline run."""
    runs = store.get_contexts_by_type(RUN_CONTEXT)
    if not runs:
        return {}
    latest = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = sorted(store.get_executions_by_context(latest.id), key=lambda e: e.id)
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in store.get_artifacts_by_id(
        sorted({e.artifact_id for e in events}))}
    result = {}
    for execution in executions:
        nodes = [c for c in store.get_contexts_by_execution(execution.id)
                 if store.get_context_types_by_id([c.type_id])[0].name == NODE_CONTEXT]
        node_id = nodes[0].name.rsplit(".", 1)[-1] if nodes else str(execution.id)
        mine = [e for e in events if e.execution_id == execution.id]
        outs = [e for e in mine if e.type in (metadata_store_pb2.Event.OUTPUT,
                                              metadata_store_pb2.Event.DECLARED_OUTPUT)]
        ins = [e for e in mine if e.type in (metadata_store_pb2.Event.INPUT,
                                             metadata_store_pb2.Event.DECLARED_INPUT)]
        result[node_id] = NodeRun(execution.id, _STATES.Name(execution.last_known_state),
                                  _by_key(outs, artifacts), _by_key(ins, artifacts))
    return result


def upstream(store, artifact_id: int) -> list[metadata_store_pb2.Artifact]:
    """Every artifact `artifact_id` was derived from, nearest first (breadth first over the
    executions that produced it and their inputs)."""
    seen, order, frontier = {artifact_id}, [], [artifact_id]
    while frontier:
        events = store.get_events_by_artifact_ids(frontier)
        producers = sorted({e.execution_id for e in events
                            if e.type == metadata_store_pb2.Event.OUTPUT})
        frontier = []
        if producers:
            for e in store.get_events_by_execution_ids(producers):
                if e.type == metadata_store_pb2.Event.INPUT and e.artifact_id not in seen:
                    seen.add(e.artifact_id)
                    frontier.append(e.artifact_id)
        if frontier:
            order += store.get_artifacts_by_id(frontier)
    return order


def custom_property(artifact: metadata_store_pb2.Artifact, name: str, default=None):
    if name not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))

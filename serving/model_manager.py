"""Keeps each configured model's servable versions in line with its base path and policy.

A version is a sub-directory of the base path named by a non-negative integer (anything else,
such as `3.tmp` or `.3`, is ignored: push a version by writing it under a temporary name and
renaming it). It is loaded only once complete: `saved_model.pb` (or `.pbtxt`) and
`variables/variables.index` with every `variables.data-*-of-N` shard. The base path is
re-scanned every `poll_seconds` in a background thread:

* the policy (latest N, all, specific) picks the versions to serve out of the complete ones;
* wanted versions are loaded; one that fails stays END with the error in its status and is
  retried only when its files change (a copy that was still being written);
* served versions no longer wanted are unloaded, but only once a wanted version is available
  (as upstream's availability-preserving policy), or when their directory is gone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from serving.config import VersionPolicy
from serving.servable import Servable
from serving.validation import not_found

log = logging.getLogger("serving")
State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class VersionRecord:
    """What the manager knows about one on-disk version."""

    version: int
    path: str
    state: int = State.START
    error_code: int = grpc.StatusCode.OK.value[0]
    error: str = ""
    servable: Servable | None = None
    fingerprint: tuple = ()


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name if "://" in base else os.path.join(base, name)


def is_complete(path: str) -> bool:
    """True once a version directory holds a whole SavedModel."""
    if not any(tf.io.gfile.exists(_join(path, n)) for n in ("saved_model.pb",
                                                           "saved_model.pbtxt")):
        return False
    variables = _join(path, "variables")
    if not tf.io.gfile.exists(_join(variables, "variables.index")):
        return False
    shards = [n for n in tf.io.gfile.listdir(variables) if n.startswith("variables.data-")]
    counts = {int(m.group(1)) for m in (re.search(r"-of-(\d+)$", n) for n in shards) if m}
    return len(counts) == 1 and len(shards) == counts.pop()


def fingerprint(path: str) -> tuple:
    """File names, sizes and mtimes under `path`: changes while a copy is in progress."""
    entries = []
    for root, _, files in tf.io.gfile.walk(path):
        for name in files:
            stat = tf.io.gfile.stat(_join(root, name))
            entries.append((_join(root, name), stat.length, stat.mtime_nsec))
    return tuple(sorted(entries))


def scan_versions(base_path: str) -> dict[int, str]:
    """{version: path} of the complete versions under a base path ({} if it is missing)."""
    if not tf.io.gfile.isdir(base_path):
        return {}
    found = {}
    for name in tf.io.gfile.listdir(base_path):
        name = name.rstrip("/")
        path = _join(base_path, name)
        if re.fullmatch(r"\d+", name) and tf.io.gfile.isdir(path) and is_complete(path):
            found[int(name)] = path
    return found


class ModelManager:
    """Loads, serves and unloads versions of the models in a ModelServerConfig."""

    def __init__(self, model_configs, poll_seconds: float = 1.0, operator_rules=None,
                 loader=Servable):
        self._configs = {m.name: m for m in model_configs}
        self._policies = {m.name: VersionPolicy.from_model_config(m) for m in model_configs}
        self._records: dict[str, dict[int, VersionRecord]] = {m: {} for m in self._configs}
        self._rules = operator_rules or {}
        self._loader = loader
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()       # guards _records
        self._poll_lock = threading.Lock()  # one poll at a time
        self._stop = threading.Event()
        self._thread = None
        self._warned: set[str] = set()

    # --- lifecycle ---

    def start(self) -> None:
        """Loads what the policies ask for now (blocking, as upstream), then keeps polling."""
        self.poll()
        self._thread = threading.Thread(target=self._poll_loop, name="model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            self.poll()

    def poll(self) -> None:
        """One scan of every base path: load, retry and unload as the policies say."""
        with self._poll_lock:
            for name, config in self._configs.items():
                try:
                    self._poll_model(name, config.base_path)
                except Exception:  # noqa: BLE001 - e.g. files vanishing mid-scan; next poll
                    log.exception("model %s: scanning %s failed", name, config.base_path)

    def _poll_model(self, name: str, base_path: str) -> None:
        found = scan_versions(base_path)
        wanted = self._policies[name].select(found)
        if not found and name not in self._warned:
            self._warned.add(name)  # once, not every poll
            log.warning("model %s: no complete version under %s yet", name, base_path)
        for version in sorted(wanted, reverse=True):
            self._maybe_load(name, version, found[version])
        with self._lock:
            records = self._records[name]
            serving_wanted = any(records[v].state == State.AVAILABLE for v in wanted
                                 if v in records)
            doomed = [r for r in records.values() if r.state == State.AVAILABLE
                      and r.version not in wanted and (serving_wanted or r.version not in found)]
            for record in doomed:
                record.state = State.UNLOADING
            for version in [v for v, r in records.items()
                            if v not in found and r.state == State.END]:
                del records[version]  # gone from disk: forget it
        for record in doomed:
            self._unload(name, record)

    def _maybe_load(self, name: str, version: int, path: str) -> None:
        with self._lock:
            record = self._records[name].get(version)
        if record is not None and record.state == State.AVAILABLE:
            return
        current = fingerprint(path)
        if record is not None and record.error and record.fingerprint == current:
            return  # failed, and its files have not changed since
        with self._lock:
            record = VersionRecord(version, path, State.LOADING, fingerprint=current)
            self._records[name][version] = record
        log.info("model %s: loading version %d from %s", name, version, path)
        try:
            servable = self._loader(path, version, self._rules.get(name))
        except Exception as e:  # noqa: BLE001 - a broken version must not stop the server
            log.error("model %s: version %d failed to load: %s", name, version, e)
            with self._lock:
                record.state, record.error_code = State.END, grpc.StatusCode.UNKNOWN.value[0]
                record.error = f"failed to load version {version} from {path}: {e}"
            return
        with self._lock:
            record.servable, record.state = servable, State.AVAILABLE
        log.info("model %s: version %d available", name, version)

    def _unload(self, name: str, record: VersionRecord) -> None:
        log.info("model %s: unloading version %d", name, record.version)
        with self._lock:
            # In-flight requests keep their own reference; memory goes when they finish.
            record.servable, record.state = None, State.END

    # --- queries ---

    def model_names(self) -> list[str]:
        return list(self._configs)

    def _model(self, name: str) -> dict[int, VersionRecord]:
        if name not in self._records:
            raise not_found(f"model '{name}' is not served (serving: "
                            f"{', '.join(self._configs)})")
        return self._records[name]

    def resolve_label(self, name: str, label: str) -> int:
        self._model(name)
        labels = self._configs[name].version_labels
        if label not in labels:
            raise not_found(f"model '{name}': unknown version label '{label}'")
        return labels[label]

    def get(self, name: str, version: int | None = None) -> Servable:
        """The servable for a request: a given version, else the newest available one."""
        with self._lock:
            records = self._model(name)
            available = sorted(v for v, r in records.items() if r.state == State.AVAILABLE)
            if version is None and available:
                return records[available[-1]].servable
            if version in available:
                return records[version].servable
            record = records.get(version) if version is not None else None
        which = "any version" if version is None else f"version {version}"
        detail = f"; {record.error}" if record is not None and record.error else ""
        raise not_found(f"model '{name}' {which} is not available (available: "
                        f"{', '.join(map(str, available)) or 'none'}){detail}")

    def statuses(self, name: str, version: int | None = None) -> list[VersionRecord]:
        """Copies of the version records, newest first (one when `version` is given)."""
        with self._lock:
            records = self._model(name)
            if version is not None and version not in records:
                raise not_found(f"model '{name}' has no version {version}")
            if not records:
                raise not_found(f"could not find any versions of model '{name}'")
            picked = [records[version]] if version is not None else [
                records[v] for v in sorted(records, reverse=True)]
            return [dataclasses.replace(r, servable=None) for r in picked]

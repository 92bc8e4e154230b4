"""Choosing the tf.distribute strategy from the environment, and who the chief is."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from jukebox_tf.errors import JukeboxError

# Job names that run training replicas under MultiWorkerMirroredStrategy.
_WORKER_JOBS = ("chief", "worker")


def strategy_from_env(tpu: str | None = None) -> tf.distribute.Strategy:
    """TPUStrategy if `tpu` is given; MultiWorkerMirrored if TF_CONFIG's cluster has more than
    one task; Mirrored if more than one GPU is visible; else the default strategy.

    An explicit `tpu` wins over TF_CONFIG because TPU pods are driven by one client.
    """
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if cluster_size(os.environ.get("TF_CONFIG")) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    # Physical devices: listing them does not initialize the runtime.
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cluster_size(tf_config: str | None) -> int:
    """Number of training tasks (chief + workers) that a TF_CONFIG string names; 0 if unset."""
    if not tf_config:
        return 0
    try:
        cluster = json.loads(tf_config).get("cluster", {})
    except (json.JSONDecodeError, AttributeError):
        raise JukeboxError(f"TF_CONFIG is not a JSON object: {tf_config[:200]!r}") from None
    if not isinstance(cluster, dict):
        raise JukeboxError("TF_CONFIG: 'cluster' must map job names to lists of host:port")
    if cluster.get("ps"):
        raise JukeboxError("TF_CONFIG names 'ps' tasks: parameter-server training is not "
                           "supported; use only 'chief'/'worker' tasks")
    return sum(len(cluster.get(job) or ()) for job in _WORKER_JOBS)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the task that writes checkpoints and summaries: the 'chief' task if the cluster
    has one, else worker 0; always true outside multi-worker training."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict() if resolver else {}
    if not cluster:
        return True
    return is_chief_task(resolver.task_type, resolver.task_id, "chief" in cluster)


def is_chief_task(task_type: str | None, task_id: int | None, cluster_has_chief: bool) -> bool:
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not cluster_has_chief

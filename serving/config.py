"""The two configuration files stock TF Serving reads, parsed the way it parses them.

* `--model_config_file`: a `ModelServerConfig` text proto (`models.config`). Only
  `model_config_list` is supported (as in stock TF Serving's open-source build). A relative
  `base_path` is resolved against the config file's directory, so the repo's `serving/` folder
  can point at `../models/jukebox`; stock TF Serving resolves it against its working directory,
  so give it an absolute path there (BUILD.md does).
* `--batching_parameters_file`: a `BatchingParameters` text proto (`batching.config`).
  `tensorflow-serving-api` does not ship `session_bundle_config_pb2`, so unless a newer wheel
  provides it the message is declared here from the upstream `.proto` (text format only needs
  the field names; the numbers follow upstream too).
"""

from __future__ import annotations

import dataclasses
import os

from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from jukebox_tf.errors import JukeboxError


class ConfigError(JukeboxError):
    """A config file that cannot be read, parsed or used."""


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the {what} {path!r}: {e.strerror or e}") from e


def _parse(text: str, message, path: str, what: str):
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: not a valid {what} text proto: {e}") from e


# --- ModelServerConfig --------------------------------------------------------------------


def load_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses and checks a ModelServerConfig; base paths come back absolute."""
    config = _parse(_read_text(path, "model config"),
                    model_server_config_pb2.ModelServerConfig(), path, "ModelServerConfig")
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: needs a model_config_list (custom_model_config is not "
                          "supported)")
    models = config.model_config_list.config
    if not models:
        raise ConfigError(f"{path}: model_config_list has no models")
    seen = set()
    for model in models:
        where = f"{path}: model {model.name or '(unnamed)'!r}"
        if not model.name:
            raise ConfigError(f"{where}: name is required")
        if model.name in seen:
            raise ConfigError(f"{where}: the name appears twice")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{where}: base_path is required")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{where}: model_platform {model.model_platform!r} is not "
                              "supported (only 'tensorflow')")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            raise ConfigError(f"{where}: specific policy lists no versions")
        for label, version in model.version_labels.items():
            if version < 0:
                raise ConfigError(f"{where}: version label {label!r} -> {version} is negative")
        if "://" not in model.base_path:  # gs://, s3://... are left to tf.io.gfile
            model.base_path = os.path.normpath(
                os.path.join(os.path.dirname(os.path.abspath(path)), model.base_path))
    return config


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which on-disk versions to serve: the latest N, all, or an explicit set."""

    kind: str  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: frozenset = frozenset()

    @classmethod
    def from_model_config(cls, model) -> "VersionPolicy":
        policy = model.model_version_policy
        choice = policy.WhichOneof("policy_choice")
        if choice == "all":
            return cls("all")
        if choice == "specific":
            return cls("specific", versions=frozenset(policy.specific.versions))
        # Unset policy and `latest {}` both mean the latest single version, as upstream.
        return cls("latest", num_versions=max(1, policy.latest.num_versions or 1))

    def select(self, versions) -> set[int]:
        """The versions to serve out of the complete ones found on disk."""
        versions = sorted(versions)
        if self.kind == "all":
            return set(versions)
        if self.kind == "specific":
            return set(versions) & self.versions
        return set(versions[-self.num_versions:])


# --- BatchingParameters -------------------------------------------------------------------

try:  # present only in wheels that ship the servables protos
    from tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import (  # type: ignore
        BatchingParameters)
except ImportError:
    def _declare_batching_parameters():
        """Builds tensorflow.serving.BatchingParameters in a private descriptor pool."""
        pool = descriptor_pool.DescriptorPool()
        wrappers = descriptor_pb2.FileDescriptorProto()
        wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
        pool.Add(wrappers)
        f = descriptor_pb2.FileDescriptorProto(
            name="jukebox_serving/batching_parameters.proto", package="tensorflow.serving",
            syntax="proto3", dependency=[wrappers.name])
        msg = f.message_type.add(name="BatchingParameters")
        fd = descriptor_pb2.FieldDescriptorProto
        for number, name, type_name in [
                (1, "max_batch_size", "Int64Value"), (2, "batch_timeout_micros", "Int64Value"),
                (3, "max_enqueued_batches", "Int64Value"), (4, "num_batch_threads", "Int64Value"),
                (5, "thread_pool_name", "StringValue")]:
            msg.field.add(name=name, number=number, label=fd.LABEL_OPTIONAL,
                          type=fd.TYPE_MESSAGE, type_name=f".google.protobuf.{type_name}")
        msg.field.add(name="allowed_batch_sizes", number=6, label=fd.LABEL_REPEATED,
                      type=fd.TYPE_INT64)
        msg.field.add(name="pad_variable_length_inputs", number=7, label=fd.LABEL_OPTIONAL,
                      type=fd.TYPE_BOOL)
        pool.Add(f)
        desc = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
        try:
            from google.protobuf.message_factory import GetMessageClass  # protobuf >= 4.21
            return GetMessageClass(desc)
        except ImportError:
            from google.protobuf.message_factory import MessageFactory
            return MessageFactory(pool).GetPrototype(desc)

    BatchingParameters = _declare_batching_parameters()


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Batching knobs with upstream's defaults for the fields a file leaves out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False

    @classmethod
    def from_proto(cls, params, where: str = "batching parameters") -> "BatchingOptions":
        values = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                     "num_batch_threads"):
            if params.HasField(name):
                values[name] = getattr(params, name).value
        opts = dataclasses.replace(cls(), **values,
                                   allowed_batch_sizes=tuple(params.allowed_batch_sizes),
                                   pad_variable_length_inputs=params.pad_variable_length_inputs)
        opts.check(where)
        return opts

    def check(self, where: str) -> None:
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ConfigError(f"{where}: max_batch_size, num_batch_threads and "
                              "max_enqueued_batches must be at least 1")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"{where}: batch_timeout_micros must not be negative")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != self.max_batch_size
                      or sizes[0] < 1):
            raise ConfigError(f"{where}: allowed_batch_sizes must be increasing and end with "
                              f"max_batch_size ({self.max_batch_size})")


def load_batching_options(path: str) -> BatchingOptions:
    """Reads a BatchingParameters text proto into BatchingOptions."""
    params = _parse(_read_text(path, "batching parameters file"), BatchingParameters(), path,
                    "BatchingParameters")
    return BatchingOptions.from_proto(params, path)

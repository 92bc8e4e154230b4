"""AudioSchemaGen: the stock SchemaGen whose schema also documents each audio feature.

TFDV infers names, types and presence from the statistics; this executor then adds each
feature's type and meaning (from the table in `jukebox_tf/audio/schema.py`, the one
description of the record) as an annotation comment, so `schema.pbtxt` says what every
feature holds.
"""

from __future__ import annotations

import os

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components import SchemaGen
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.utils import io_utils


def document(schema: schema_pb2.Schema, docs: dict[str, str]) -> schema_pb2.Schema:
    """Adds docs[name] as an annotation comment to each feature (once)."""
    for feature in schema.feature:
        text = docs.get(feature.name)
        if text and text not in feature.annotation.comment:
            feature.annotation.comment.append(text)
    return schema


class Executor(schema_gen_executor.Executor):

    def Do(self, input_dict, output_dict, exec_properties):
        from jukebox_tf.audio.schema import feature_docs

        super().Do(input_dict, output_dict, exec_properties)
        path = os.path.join(artifact_utils.get_single_uri(output_dict["schema"]),
                            schema_gen_executor.DEFAULT_FILE_NAME)
        schema = io_utils.parse_pbtxt_file(path, schema_pb2.Schema())
        io_utils.write_pbtxt_file(path, document(schema, feature_docs()))


class AudioSchemaGen(SchemaGen):
    """SchemaGen(statistics=..., infer_feature_shape=...) with documented features."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

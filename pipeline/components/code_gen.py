"""CodeGen: audio Examples -> VQ-VAE codes per level, the data the priors train on.

A Beam component, so it scales with the runner (DirectRunner here; Flink, Spark or Dataflow
for large corpora): each split's gzipped chunk Examples are batched, encoded by the trained
VQ-VAE (loaded once per worker in `setup`), and written as codes Examples. Every output split
is a codes folder exactly as `jukebox-tf encode` writes one (`codes.json` + shards), built by
the same library functions, so `train-prior --codes <uri>/Split-train` also works on it.
URIs (gs://...) work as local paths do: files go through `jukebox_tf.storage` and Beam's own
filesystems.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, component_spec, standard_artifacts

CODES_PREFIX = "codes"
_TOKENS_FILE = "tokens.json"


class _Encode(beam.DoFn):
    """Batches of serialized audio chunks -> (serialized codes Example, tokens per level)."""

    def __init__(self, run_dir: str, length: int):
        self.run_dir, self.length = run_dir, length

    def setup(self):
        import tensorflow as tf

        from jukebox_tf.vqvae.task import load_vqvae_run

        self.model = load_vqvae_run(self.run_dir)
        self.encode = tf.function(lambda audio: self.model.encode(audio))

    def process(self, serialized: list):
        from jukebox_tf.codes.encode import chunk_windows
        from jukebox_tf.codes.format import code_examples

        batch = chunk_windows(serialized, self.length)
        for _, record, tokens in code_examples(batch, self.encode(batch["audio"]),
                                               self.model.config.hop_lengths):
            yield record, tokens


def _sum_columns(rows) -> list:
    total = None
    for row in rows:
        total = list(row) if total is None else [a + b for a, b in zip(total, row)]
    return total or []


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        from jukebox_tf import storage
        from jukebox_tf.audio import records
        from jukebox_tf.audio.dataset import load_manifest
        from jukebox_tf.codes.encode import encode_length
        from jukebox_tf.codes.format import codes_manifest, write_codes_manifest
        from jukebox_tf.sampling.runs import read_vqvae_config
        from pipeline.imported_runs import run_dir_of

        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        run_dir = run_dir_of(artifact_utils.get_single_instance(input_dict["model"]).uri)
        codes = artifact_utils.get_single_instance(output_dict["codes"])
        config = read_vqvae_config(run_dir)
        splits = artifact_utils.decode_split_names(examples.split_names)
        codes.split_names = artifact_utils.encode_split_names(splits)
        examples_utils.set_payload_format(codes, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        batch_size = int(exec_properties["batch_size"])

        manifests = {}
        with self._make_beam_pipeline() as p:
            for split in splits:
                in_dir = artifact_utils.get_split_uri([examples], split)
                out_dir = artifact_utils.get_split_uri([codes], split)
                storage.makedirs(out_dir)
                manifests[split] = load_manifest(in_dir)
                length = encode_length(config, manifests[split], in_dir)
                shards = max(1, len(manifests[split]["shards"]))
                encoded = (p
                           | f"Read[{split}]" >> beam.io.ReadFromTFRecord(
                               os.path.join(in_dir, "*.gz"))
                           | f"Batch[{split}]" >> beam.BatchElements(
                               min_batch_size=batch_size, max_batch_size=batch_size)
                           | f"Encode[{split}]" >> beam.ParDo(_Encode(run_dir, length)))
                _ = (encoded
                     | f"Records[{split}]" >> beam.Map(lambda pair: pair[0])
                     | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                         os.path.join(out_dir, CODES_PREFIX), file_name_suffix=".tfrecord",
                         num_shards=shards))
                _ = (encoded
                     | f"Tokens[{split}]" >> beam.Map(lambda pair: pair[1])
                     | f"SumTokens[{split}]" >> beam.CombineGlobally(_sum_columns)
                     | f"TokensJson[{split}]" >> beam.Map(json.dumps)
                     | f"WriteTokens[{split}]" >> beam.io.WriteToText(
                         os.path.join(out_dir, _TOKENS_FILE), shard_name_template=""))

        for split in splits:
            out_dir = artifact_utils.get_split_uri([codes], split)
            files = sorted(storage.glob(os.path.join(out_dir, f"{CODES_PREFIX}-*.tfrecord")))
            shards = [{"file": os.path.basename(f),
                       "chunks": sum(1 for _ in records.read_records(f))} for f in files]
            with storage.open(os.path.join(out_dir, _TOKENS_FILE)) as f:
                tokens = json.loads(f.read() or "[]")
            storage.remove(os.path.join(out_dir, _TOKENS_FILE))
            manifest = codes_manifest(config, manifests[split], shards, tokens,
                                      source_dataset=artifact_utils.get_split_uri([examples],
                                                                                  split),
                                      source_run=run_dir)
            write_codes_manifest(out_dir, manifest)
            codes.set_int_custom_property(f"{split}_chunks", manifest["chunks"])


class CodeGenSpec(types.ComponentSpec):
    PARAMETERS = {"batch_size": component_spec.ExecutionParameter(type=int)}
    INPUTS = {
        "examples": component_spec.ChannelParameter(type=standard_artifacts.Examples),
        "model": component_spec.ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {"codes": component_spec.ChannelParameter(type=standard_artifacts.Examples)}


class CodeGen(base_beam_component.BaseBeamComponent):
    """Encodes AudioExampleGen's splits with a trained VQ-VAE (the VQ-VAE Trainer's model)."""

    SPEC_CLASS = CodeGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 batch_size: int = 8):
        super().__init__(spec=CodeGenSpec(
            examples=examples, model=model, batch_size=batch_size,
            codes=types.Channel(type=standard_artifacts.Examples)))

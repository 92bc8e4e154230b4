"""JukeboxEvaluator: the pipeline's model evaluation and blessing.

A custom component rather than the stock Evaluator: TFMA evaluates a model that maps
Examples to predictions and compares those with labels; the numbers that say whether a
Jukebox is good are the VQ-VAE's spectral convergence after an encode/decode round trip of
each level (a function of audio in and audio out, no label) and each prior's bits per token
on codes that the model's own VQ-VAE produces from the eval audio (a teacher-forced loss over
windows of a second model's output). Neither is a TFMA metric over model predictions, so
this component computes them with the library (`jukebox_tf.vqvae.evaluate`,
`jukebox_tf.prior.evaluate`) and writes the stock artifacts:

- `evaluation` (ModelEvaluation): `metrics.json` = {"current": metrics, "baseline": metrics or
  null, "baseline_error": why the baseline could not be evaluated or null, "checks": [{"name",
  "metric", "value", "limit", "passed", "reason"}], "blessed", ...}.
- `blessing` (ModelBlessing): a `BLESSED` or `NOT_BLESSED` file and the custom properties the
  stock Evaluator sets (`blessed` 1/0, `current_model`, `current_model_id`, `baseline_model`,
  `baseline_model_id`), so the stock Pusher reads it.

Inputs: `examples` (AudioExampleGen: its Split-eval folder is a dataset folder), `model`
(ModelExport: `<uri>/runs/{vqvae,level2,level1,level0}` are the training runs) and optionally
`baseline_model` (the last blessed ModelExport, from a Resolver with
LatestBlessedModelStrategy). The model is blessed when every threshold holds and, with a
baseline, no metric is worse than the baseline's by more than its tolerance.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils

from jukebox_tf import storage
from jukebox_tf.errors import JukeboxError
from jukebox_tf.vqvae.evaluate import metric_key
from pipeline.components.model_export import run_dirs
from pipeline.imported_runs import run_dir_of

METRICS_FILE = "metrics.json"
START_PREFIX = "starting_prior/"  # metrics of the prior a fine-tuned one started from
SC_DB = "spectral_convergence_db"
BITS = "bits_per_token"

DEFAULT_MAX_SC_DB = (-1.0, 0.0, 0.0)  # level 0 must reconstruct; 0 dB is what silence scores
DEFAULT_SC_TOLERANCE_DB = 0.5
DEFAULT_BITS_TOLERANCE = 0.05


def evaluate_model(model_uri: str, data_dir: str, max_eval_chunks: Optional[int] = None,
                   max_eval_windows: Optional[int] = None, work_dir: Optional[str] = None,
                   start_prior: Optional[str] = None) -> dict:
    """The metrics of a ModelExport model (its training runs, `model_export.run_dirs`) on the
    dataset folder `data_dir`: spectral_convergence_db/l<L> (and the ratio) for every VQ-VAE
    level, bits_per_token/l<L> for every prior level present, "l_bins" and "levels". With
    `start_prior` (the run a prior was fine-tuned from), also its bits per token on the same
    codes, as START_PREFIX + bits_per_token/l<L>. Each prior reads the data's artist and genre
    names in its own vocabulary."""
    from jukebox_tf.prior.evaluate import encode_and_evaluate
    from jukebox_tf.prior.task import load_prior_run, prior_run_vocab
    from jukebox_tf.vqvae.evaluate import evaluate_vqvae
    from jukebox_tf.vqvae.task import load_vqvae_run

    runs = run_dirs(model_uri)
    vqvae = load_vqvae_run(runs["vqvae"])
    metrics = {"levels": vqvae.config.levels, "l_bins": vqvae.config.l_bins}
    metrics.update(evaluate_vqvae(vqvae, data_dir, max_chunks=max_eval_chunks))
    prior_runs = {level: runs[f"level{level}"] for level in range(vqvae.config.levels)
                  if storage.isdir(runs.get(f"level{level}", ""))}
    if start_prior:
        prior_runs[START_PREFIX] = start_prior
    priors = {key: load_prior_run(run) for key, run in prior_runs.items()}
    vocabs = {key: prior_run_vocab(run) for key, run in prior_runs.items()}
    results = encode_and_evaluate(vqvae, priors, data_dir, max_windows=max_eval_windows,
                                  work_dir=work_dir, vocabs=vocabs)
    for key, result in results.items():
        level = priors[key].config.level
        metrics[metric_key(BITS, level) if key != START_PREFIX
                else START_PREFIX + metric_key(BITS, level)] = result[BITS]
    return metrics


def _check(name: str, metric: str, value, limit, passed: bool, reason: str) -> dict:
    return {"name": name, "metric": metric, "value": value, "limit": limit,
            "passed": bool(passed), "reason": "" if passed else reason}


def _baseline_check(key: str, value: float, baseline: dict | None, tolerance: float,
                    fmt: str, unit: str) -> list:
    """[] without a baseline value; else the check that `value` (lower is better) is at most
    the baseline's plus `tolerance`."""
    if baseline is None or key not in baseline:
        return []
    worst = baseline[key] + tolerance
    return [_check(f"baseline {key}", key, value, worst, value <= worst,
                   f"{key} = {value:{fmt}}{unit} is worse than the baseline's "
                   f"{baseline[key]:{fmt}}{unit} by more than {tolerance}{unit}")]


def run_checks(current: dict, baseline: Optional[dict], max_sc_db: Sequence[Optional[float]],
               max_bits: Sequence[Optional[float]], sc_tolerance_db: float,
               bits_tolerance: float) -> list[dict]:
    """Every threshold and baseline check as a dict (see the module docstring). max_sc_db[L]
    and max_bits[L]: the limit of level L (None: the default, SC per DEFAULT_MAX_SC_DB, bits
    below log2(l_bins), i.e. better than a uniform guess). A fine-tuned prior (`current` has
    its starting prior's START_PREFIX metric) must also beat its starting prior, strictly."""
    checks = []
    for level in range(current["levels"]):
        key = metric_key(SC_DB, level)
        limit = max_sc_db[level] if level < len(max_sc_db) else None
        if limit is None and level < len(DEFAULT_MAX_SC_DB):
            limit = DEFAULT_MAX_SC_DB[level]
        value = current[key]
        if limit is not None:
            checks.append(_check(f"threshold {key}", key, value, limit, value <= limit,
                                 f"{key} = {value:.2f} dB is above the maximum {limit:.2f} dB"))
        checks += _baseline_check(key, value, baseline, sc_tolerance_db, ".2f", " dB")
    for level in range(current["levels"]):
        key = metric_key(BITS, level)
        if key not in current:
            continue
        value = current[key]
        limit = max_bits[level] if level < len(max_bits) else None
        if limit is None:
            limit = math.log2(current["l_bins"])
            ok, words = value < limit, "not below log2(codebook size) ="
        else:
            ok, words = value <= limit, "above the maximum"
        checks.append(_check(f"threshold {key}", key, value, limit, ok,
                             f"{key} = {value:.3f} is {words} {limit:.3f}"))
        checks += _baseline_check(key, value, baseline, bits_tolerance, ".3f", "")
        start = current.get(START_PREFIX + key)
        if start is not None:
            checks.append(_check(
                f"starting prior {key}", key, value, start, value < start,
                f"{key} = {value:.3f} does not beat the starting prior's {start:.3f}"))
    return checks


def format_table(checks: list[dict]) -> str:
    """One line per check: name, value, limit, PASS/FAIL."""
    width = max([len(c["name"]) for c in checks] + [5])
    lines = [f"{'check':<{width}}  {'value':>9}  {'limit':>9}  result"]
    for c in checks:
        lines.append(f"{c['name']:<{width}}  {c['value']:>9.3f}  {c['limit']:>9.3f}  "
                     f"{'PASS' if c['passed'] else 'FAIL'}")
    return "\n".join(lines)


def _levels_param(text: str) -> list[Optional[float]]:
    return [None if v is None else float(v) for v in json.loads(text or "[]")]


class Executor(base_executor.BaseExecutor):
    """Evaluates `model` (and `baseline_model`) on the eval split; writes the evaluation and
    the blessing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        baselines = input_dict.get("baseline_model") or []
        if len(baselines) > 1:
            raise ValueError(f"there can be only one baseline model, there are {len(baselines)}")
        baseline_model = baselines[0] if baselines else None
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])

        data_dir = artifact_utils.get_split_uri([examples], "eval")
        max_chunks = exec_properties.get("max_eval_chunks") or None
        max_windows = exec_properties.get("max_eval_windows") or None
        work_dir = self._get_tmp_dir() if self._context else None  # None: the system's

        starts = input_dict.get("start_prior") or []
        start_prior = run_dir_of(starts[0].uri) if starts else None

        def evaluate(artifact, start=None):
            return evaluate_model(artifact.uri, data_dir, max_chunks, max_windows, work_dir,
                                  start)

        current = evaluate(model, start_prior)
        baseline = baseline_error = None
        if baseline_model is not None and baseline_model.uri == model.uri:
            baseline = current
        elif baseline_model is not None:
            try:
                baseline = evaluate(baseline_model)
            except JukeboxError as e:
                # E.g. the data's sample rate changed since: thresholds still decide.
                baseline_error = f"the baseline could not be evaluated on this data: {e}"
                logging.warning("%s", baseline_error)
        checks = run_checks(
            current, baseline, _levels_param(exec_properties.get("max_spectral_convergence_db")),
            _levels_param(exec_properties.get("max_bits_per_token")),
            float(exec_properties.get("sc_tolerance_db", DEFAULT_SC_TOLERANCE_DB)),
            float(exec_properties.get("bits_tolerance", DEFAULT_BITS_TOLERANCE)))
        blessed = all(c["passed"] for c in checks)
        table = format_table(checks)
        print(f"JukeboxEvaluator: {'BLESSED' if blessed else 'NOT BLESSED'}\n{table}",
              flush=True)
        logging.info("JukeboxEvaluator checks:\n%s", table)

        result = {"current": current, "baseline": baseline, "baseline_error": baseline_error,
                  "checks": checks,
                  "blessed": blessed, "eval_data": data_dir, "current_model": model.uri,
                  "baseline_model": baseline_model and baseline_model.uri,
                  "start_prior": start_prior}
        io_utils.write_string_file(os.path.join(evaluation.uri, METRICS_FILE),
                                   json.dumps(result, indent=2))
        # The custom properties and files of the stock Evaluator (tfx/components/evaluator/
        # executor.py), which the stock Pusher checks.
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                            model.uri)
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY,
                                         model.id)
        if baseline_model is not None:
            blessing.set_string_custom_property(
                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline_model.uri)
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                             baseline_model.id)
        if "current_component_id" in exec_properties:
            blessing.set_string_custom_property("component_id",
                                                exec_properties["current_component_id"])
        name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(blessing.uri, name), "")
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY,
            constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)


class JukeboxEvaluatorSpec(types.ComponentSpec):
    # Per-level limits travel as JSON lists (null: the default) so that every orchestrator,
    # Kubeflow included, passes them as plain strings.
    PARAMETERS = {
        "max_spectral_convergence_db": ExecutionParameter(type=str),
        "max_bits_per_token": ExecutionParameter(type=str),
        "sc_tolerance_db": ExecutionParameter(type=float),
        "bits_tolerance": ExecutionParameter(type=float),
        "max_eval_chunks": ExecutionParameter(type=int),
        "max_eval_windows": ExecutionParameter(type=int),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        "start_prior": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class JukeboxEvaluator(base_component.BaseComponent):
    """Spectral convergence per VQ-VAE level and bits per token per prior on the eval split,
    thresholds and a baseline comparison; outputs `evaluation` and `blessing` (module
    docstring)."""

    SPEC_CLASS = JukeboxEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: Optional[types.BaseChannel] = None,
                 start_prior: Optional[types.BaseChannel] = None,
                 max_spectral_convergence_db: Sequence[Optional[float]] = DEFAULT_MAX_SC_DB,
                 max_bits_per_token: Sequence[Optional[float]] = (),
                 sc_tolerance_db: float = DEFAULT_SC_TOLERANCE_DB,
                 bits_tolerance: float = DEFAULT_BITS_TOLERANCE,
                 max_eval_chunks: int = 64, max_eval_windows: int = 64):
        """max_spectral_convergence_db[L]: the most spectral convergence (dB) level L may
        have (None or missing: DEFAULT_MAX_SC_DB); max_bits_per_token[L]: the most bits per
        token of the level-L prior (None or missing: below log2(codebook size));
        sc_tolerance_db / bits_tolerance: how much worse than the baseline a metric may be;
        max_eval_chunks: audio chunks for the VQ-VAE, max_eval_windows: windows per prior
        (0: all). start_prior: the run the top prior was fine-tuned from, which it must
        beat."""
        spec = JukeboxEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            start_prior=start_prior,
            max_spectral_convergence_db=json.dumps(list(max_spectral_convergence_db)),
            max_bits_per_token=json.dumps(list(max_bits_per_token)),
            sc_tolerance_db=float(sc_tolerance_db), bits_tolerance=float(bits_tolerance),
            max_eval_chunks=int(max_eval_chunks), max_eval_windows=int(max_eval_windows),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)

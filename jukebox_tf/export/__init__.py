"""Trained models -> versioned SavedModels for TF Serving (`jukebox-tf export`).

    from jukebox_tf.export import export_models
    result = export_models(vqvae, priors, "models/jukebox", vocab=runs.vocab)

export.py writes the version folder, module.py holds the signatures, conditioning.py their
in-graph labels and lyric tokens, request_checks.py what they refuse, row_groups.py the running
of a request's rows in groups, graph_sampling.py the in-graph windowed sampling, versions.py
the version numbering and atomic placement, warmup.py TF Serving's warmup requests. Names load
on first use (no TensorFlow on import).
"""

import importlib

_EXPORTS = {
    "export_models": "export",
    "ExportLimits": "export",
    "ExportResult": "export",
    "serving_limits": "export",
    "LIMITS_FILE": "export",
    "JukeboxModule": "module",
    "ExportInfo": "module",
    "next_version": "versions",
    "existing_versions": "versions",
    "write_version": "versions",
    "WARMUP_FILE": "warmup",
    "example_inputs": "warmup",
    "read_warmup": "warmup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

"""A local stand-in for TF Serving: its gRPC API (PredictionService Predict and
GetModelMetadata, ModelService GetModelStatus) and REST API over a versioned SavedModel base
path and a ModelServerConfig file, so the stock clients work against it unchanged.

Modules: `config` (the config files), `model_manager` (versions on disk -> loaded servables),
`servable` (one loaded version), `validation` (request checks), `service` (the RPC logic),
`batching`, `rest`, `options`, `server` (wiring), `cli` (the command line), `client` (helpers
over the stock stubs) and `toy_model` (a tiny SavedModel for tests and benchmarks).
It uses the jukebox_tf library, never the reverse. See serving/README.md.
"""

"""`jukebox-tf serve`: the TF-Serving-compatible server of the `serving` package.

The one place where the library's command line reaches into `serving/` (which otherwise only
uses the library): users expect every command under `jukebox-tf`. Building the parser loads no
TensorFlow; `python -m serving` takes the same arguments.
"""

from __future__ import annotations


def register(subparsers) -> None:
    from serving import cli

    p = subparsers.add_parser(
        "serve", help="serve exported models over TF Serving's gRPC and REST APIs",
        description="Serve the versioned SavedModels named in a ModelServerConfig over TF "
        "Serving's gRPC API (PredictionService, ModelService) and REST API; new versions pushed "
        "under the base path are picked up without a restart.")
    cli.add_arguments(p)
    p.set_defaults(func=cli.run)

"""`jukebox-tf pipeline run|compile`: the TFX pipeline of the `pipeline` package.

Like `serve`, a command that reaches from the library's command line into a package that uses
the library (`pipeline/`); the library itself never imports it.
"""

from __future__ import annotations


def register(subparsers) -> None:
    from pipeline import cli

    p = subparsers.add_parser(
        "pipeline", help="run the TFX pipeline locally, or compile it for Kubeflow",
        description="The TFX pipeline: audio folder -> Examples -> VQ-VAE -> codes -> priors -> "
        "evaluation and blessing -> infra validation -> push to the serving base path.")
    cli.add_arguments(p)
    p.set_defaults(func=cli.main)

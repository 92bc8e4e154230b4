"""`python -m serving ...`: the model server (see serving/cli.py)."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from jukebox_tf import xla_cache  # noqa: E402
from serving.cli import main  # noqa: E402

xla_cache.enable()  # the *_xla signatures' compiled loops, kept between server starts

sys.exit(main())

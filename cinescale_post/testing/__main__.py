"""``python -m cinescale_post.testing sample OUT.mov`` (scripts/demo.sh): the demo clip."""

from . import _main

_main()

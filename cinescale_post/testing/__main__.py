"""``python -m cinescale_post.testing sample OUT.mov`` (scripts/demo.sh): the demo clip."""

from cinescale_post.testing import _main

_main()

"""cinescale-post: CineScale upscaling as a post-production tool.

Public API: :data:`hookimpl` for plugins, the value types and protocols in
:mod:`cinescale_post.contracts.media`, the errors in :mod:`cinescale_post.contracts.errors`.
Importing this package never imports torch or diffusers.
"""

__version__ = "0.1.0"

from cinescale_post.contracts.hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "hookimpl"]

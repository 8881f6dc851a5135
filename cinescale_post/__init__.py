"""cinescale-post: CineScale upscaling as a post-production tool.

Public API: :data:`hookimpl` for plugins, the value types and protocols in
:mod:`cinescale_post.interfaces`, the errors in :mod:`cinescale_post.errors`.
Importing this package never imports torch or diffusers.
"""

__version__ = "0.1.0"

from cinescale_post.hookspecs import hookimpl  # noqa: E402

__all__ = ["__version__", "hookimpl"]

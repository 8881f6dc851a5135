"""SDXL-family UNet backend for cinescale-post (FreeScale method).

Importing this package does not import torch or diffusers; the backend loads
them in ``load``.
"""

__version__ = "0.1.0"

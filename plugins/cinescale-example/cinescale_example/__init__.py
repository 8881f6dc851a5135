"""Template backend for cinescale-post (a Stable Diffusion 1.5-style UNet).

Importing this package does not import torch or diffusers.
"""

__version__ = "0.1.0"

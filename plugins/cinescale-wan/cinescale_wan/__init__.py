"""cinescale-wan: the Wan 2.1/2.2 DiT backend of cinescale-post (entry point ``wan``)."""

__version__ = "0.1.0"

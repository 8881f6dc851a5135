"""Real-size simulation without a GPU (issue 16).

The full SDXL base and Wan 2.1 (1.3B, 14B) architectures are built from their
published configs on the meta device (:mod:`.configs`, :mod:`.build`: no
weights, no download) and run through the project's own backends and cascade
driver with every patch active, under a dispatch mode that counts FLOPs per
op and live tensor bytes (:mod:`.tracker`), per stage and per component
(:mod:`.driver`). :mod:`.cases` holds the issue's figures and sets the memory
planner's estimate next to each simulated peak; :mod:`.cards` names the
accelerators used for time estimates and ``--gpu``.

Importing this package imports no torch: :mod:`.configs` and :mod:`.cards`
are plain data; the other modules import torch when imported.
"""

from cinescale_post.simulate.cards import CARDS, UTILISATION, Card, card
from cinescale_post.simulate.configs import ARCHITECTURES, write_config_folder

__all__ = ["ARCHITECTURES", "CARDS", "Card", "UTILISATION", "card", "write_config_folder"]

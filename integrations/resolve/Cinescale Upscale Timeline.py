"""Cinescale Upscale Timeline -- DaVinci Resolve Workspace > Scripts entry.

Upscales the whole current timeline: exports it as OpenTimelineIO, runs
``cinescale conform`` (each clip's used frames rendered once, with handles)
and imports the relinked timeline as "<name> (cinescale)". Install next to
"Cinescale Upscale.py" (whose ``upscale_timeline`` does the work; settings
as described there).
"""

import importlib.util
import os

# Resolve runs Workspace scripts from their file; where it gives no __file__, the Scripts/Edit folder
_HERE = os.path.dirname(os.path.abspath(globals().get("__file__") or os.path.join(
    os.environ.get("CINESCALE_RESOLVE_SCRIPTS", os.getcwd()), "x")))
_spec = importlib.util.spec_from_file_location("cinescale_upscale", os.path.join(_HERE, "Cinescale Upscale.py"))
_upscale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_upscale)

if __name__ == "__main__":
    _upscale.main(_upscale.upscale_timeline)

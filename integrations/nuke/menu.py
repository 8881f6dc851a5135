"""Nuke menu entries for cinescale-post.

Put this folder on NUKE_PATH (or add ``nuke.pluginAddPath("/path/to/integrations/nuke")``
to your ~/.nuke/init.py); Nuke runs this file at start-up in GUI sessions.
"""

import nuke

import cinescale_nuke  # noqa: F401 - the commands below run in Nuke's namespace, where this import lives

COMMAND = "cinescale_nuke.render_selected()"

nuke.menu("Nuke").addMenu("Cinescale").addCommand("Upscale selected node", COMMAND, "ctrl+alt+u")
nuke.menu("Nodes").addMenu("Cinescale").addCommand("Upscale selected node", COMMAND)

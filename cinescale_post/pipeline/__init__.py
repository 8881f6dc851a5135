"""Planning: the plugin host, presets, the one validated Plan, output geometry and the window layout."""

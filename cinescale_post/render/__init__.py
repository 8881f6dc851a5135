"""The render driver: a model adapter driven through the cascade (one window at a time)."""

"""The contracts: the plugin hooks, the model-adapter and engine contracts, the media and stage value
types and the errors. They import nothing of the implementation (docs/architecture.md)."""

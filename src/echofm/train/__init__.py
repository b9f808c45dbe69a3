"""Training loops: pretraining (one process or torchrun), with its optimiser, checkpoints,
distributed helpers, logging and data sources."""

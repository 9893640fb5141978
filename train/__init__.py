"""train: the aaren-train configuration, loop, logging and checkpoints."""

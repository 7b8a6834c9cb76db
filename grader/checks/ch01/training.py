"""Checks for notebook 03_training: the assembled model, the loss, greedy decoding, the schedule."""

__all__: list[str] = []

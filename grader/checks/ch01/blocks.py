"""Checks for notebook 02_building_blocks: embeddings, positions, LayerNorm, FFN, encoder and decoder blocks."""

__all__: list[str] = []

"""Checks for chapter 5 (placeholder until the exercises are declared)."""

__all__: list[str] = []

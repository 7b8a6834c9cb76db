"""Helpers of the Makefile (not part of the llmcore or grader packages)."""

"""Instructor tooling for the llmcore course: nbgrader setup, release generation and grading.

Kept import-free so that notebooks importing ``grader.checks`` stay fast.
"""

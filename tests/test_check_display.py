"""What a learner sees when a check fails inside Jupyter: only the check's message, and the cell still fails."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

FAILING_CELL = """\
import math
from grader.checks.ch01 import check_scaled_dot_product_attention, hint

def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        visible = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~(mask | ~visible), float("-inf"))
        weights = scores.softmax(-1).masked_fill(~visible, 0.0)
    else:
        weights = scores.softmax(-1)
    return weights @ v, weights

check_scaled_dot_product_attention(scaled_dot_product_attention)
"""


@pytest.mark.slow
def test_a_failing_check_shows_only_its_message_and_fails_the_cell() -> None:
    """nbgrader counts a test cell with an error output as failed; the error's traceback is what the notebook,
    the Validate dialog and the feedback show, and it is the message alone."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(FAILING_CELL),
                                               nbformat.v4.new_code_cell('hint("scaled_dot_product_attention")')])
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True)
    client.execute()
    error = next(o for o in notebook.cells[0].outputs if o.output_type == "error")
    assert error.ename == "CheckFailure"
    text = "\n".join(error.traceback)
    assert text.startswith("✘ scaled_dot_product_attention is wrong on case 1 of 5")
    assert "Diagnosis: the 1/√d_k scale is missing." in text and "Idea: " in text
    assert "framework.py" not in text and "spec.py" not in text and "Traceback" not in text
    hint_output = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert "math.sqrt(d_k)" in hint_output


"""Feedback without hidden tests: a preprocessor for nbgrader's GenerateFeedback."""
from nbgrader.preprocessors import NbGraderPreprocessor


class HideTestTracebacks(NbGraderPreprocessor):
    """Replace the traceback of every failed test cell by its last line (the check's message).

    A traceback quotes the failing line of the test cell, which for a hidden test is the hidden
    test itself; the check's message (``CheckFailure``) is the complete feedback anyway.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    message = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
                    if output.get("ename") == "AssertionError" and not output.get("evalue"):
                        message = "AssertionError: a test in this cell failed"
                    output["traceback"] = [message]
        return cell, resources

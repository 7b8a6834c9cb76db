"""The chapter of the adversarial grading suite: the synthetic chapter plus a notebook graded by a real check."""
import nbformat
from nbformat.v4 import new_code_cell

import nbg_synthetic
from nbg_synthetic import _answer, _cell, _check, _hidden, _notebook

CHAPTER = "ch91_adversarial"
ARITHMETIC, TEXT, MASKS = "01_arithmetic", "02_text", "03_masks"
SETUP = "import torch\nimport llmcore\nfrom grader.checks.ch01 import check_causal_mask_mod"


def masks_notebook():
    """One exercise graded by grader.checks: ``causal_mask_mod`` (2 + 1 points)."""
    return _notebook([
        _cell(new_code_cell(SETUP), "setup", locked=True),
        _answer("causal_mask_mod", "def causal_mask_mod(b, h, q_idx, kv_idx):", "return kv_idx <= q_idx"),
        _check("causal_mask_mod_check", 2, "check_causal_mask_mod(causal_mask_mod)"),
        _hidden("causal_mask_mod_hidden", 1, "check_causal_mask_mod(causal_mask_mod, hidden=True)"),
    ])


NOTEBOOKS = {
    f"{ARITHMETIC}.ipynb": nbg_synthetic.arithmetic_notebook,
    f"{TEXT}.ipynb": nbg_synthetic.text_notebook,
    f"{MASKS}.ipynb": masks_notebook,
}
MAX_SCORES = {ARITHMETIC: 7.0, TEXT: 5.0, MASKS: 3.0}


def write_chapter(solutions_dir):
    chapter_dir = solutions_dir / CHAPTER
    chapter_dir.mkdir(parents=True)
    for filename, build in NOTEBOOKS.items():
        nbformat.write(build(), chapter_dir / filename)
    return chapter_dir

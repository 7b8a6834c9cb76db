"""The chapter of the adversarial grading suite: the synthetic chapter plus a notebook graded by real checks
(one exercise of chapter 1, two of chapter 5: the LLaMA recipe and ALiBi)."""
import nbformat
from nbformat.v4 import new_code_cell

import nbg_synthetic
from nbg_synthetic import _answer, _cell, _check, _hidden, _notebook

CHAPTER = "ch91_adversarial"
ARITHMETIC, TEXT, MASKS = "01_arithmetic", "02_text", "03_masks"
SETUP = (
    "import torch\nimport llmcore\nfrom grader.checks.ch01 import check_causal_mask_mod\n"
    "from grader.checks.ch05 import check_alibi_slopes, check_swiglu_hidden_size"
)
SWIGLU_HIDDEN_SIZE = "return multiple_of * -(-int((multiplier or 1) * int(8 * d_model / 3)) // multiple_of)"
ALIBI_SLOPES = (
    "power = 2 ** (n_heads.bit_length() - 1)\n"
    "    slopes = [2 ** (-8 * h / power) for h in range(1, power + 1)]\n"
    "    slopes += [2 ** (-4 * h / power) for h in range(1, 2 * (n_heads - power), 2)]\n"
    "    return torch.tensor(slopes)"
)


def masks_notebook():
    """Three exercises graded by grader.checks: ``causal_mask_mod`` (2 + 1 points), ``swiglu_hidden_size`` (1 + 1)
    and ``alibi_slopes`` (1 + 1)."""
    return _notebook([
        _cell(new_code_cell(SETUP), "setup", locked=True),
        _answer("causal_mask_mod", "def causal_mask_mod(b, h, q_idx, kv_idx):", "return kv_idx <= q_idx"),
        _check("causal_mask_mod_check", 2, "check_causal_mask_mod(causal_mask_mod)"),
        _hidden("causal_mask_mod_hidden", 1, "check_causal_mask_mod(causal_mask_mod, hidden=True)"),
        _answer("swiglu_hidden_size", "def swiglu_hidden_size(d_model, multiple_of=256, multiplier=None):", SWIGLU_HIDDEN_SIZE),
        _check("swiglu_hidden_size_check", 1, "check_swiglu_hidden_size(swiglu_hidden_size)"),
        _hidden("swiglu_hidden_size_hidden", 1, "check_swiglu_hidden_size(swiglu_hidden_size, hidden=True)"),
        _answer("alibi_slopes", "def alibi_slopes(n_heads):", ALIBI_SLOPES),
        _check("alibi_slopes_check", 1, "check_alibi_slopes(alibi_slopes)"),
        _hidden("alibi_slopes_hidden", 1, "check_alibi_slopes(alibi_slopes, hidden=True)"),
    ])


NOTEBOOKS = {
    f"{ARITHMETIC}.ipynb": nbg_synthetic.arithmetic_notebook,
    f"{TEXT}.ipynb": nbg_synthetic.text_notebook,
    f"{MASKS}.ipynb": masks_notebook,
}
MAX_SCORES = {ARITHMETIC: 7.0, TEXT: 5.0, MASKS: 7.0}


def write_chapter(solutions_dir):
    chapter_dir = solutions_dir / CHAPTER
    chapter_dir.mkdir(parents=True)
    for filename, build in NOTEBOOKS.items():
        nbformat.write(build(), chapter_dir / filename)
    return chapter_dir

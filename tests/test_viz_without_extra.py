"""``import llmcore`` and ``from llmcore import viz`` need torch only; drawing without the course extra says what to install.

The checks run in a fresh interpreter in which matplotlib, PIL and ipywidgets cannot be imported at
first; then matplotlib and PIL are let through, and ipywidgets still is not.
"""

from __future__ import annotations

import subprocess
import sys

CODE = r'''
import sys

BLOCKED = {"matplotlib", "ipywidgets", "PIL"}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked by the test)")


sys.meta_path.insert(0, Blocker())


def raises_import_error(call, needle):
    try:
        call()
    except ImportError as error:
        assert needle in str(error) and "pip install -e '.[course]'" in str(error), error
    else:
        raise AssertionError(f"expected an ImportError saying {needle!r}")


import llmcore

assert "llmcore.viz" not in sys.modules and "matplotlib" not in sys.modules
from llmcore import masks, viz

assert "matplotlib" not in sys.modules and "ipywidgets" not in sys.modules
window = masks.dense_mask(masks.sliding_window_mask(3), 1, 1, 6, 6)[0, 0]
assert viz.mask_density(window) == 15 / 36
assert viz.receptive_field(window, 2)[5].tolist() == [False, True, True, True, True, True]
assert viz.rope_scores(8, 4)[1][0].item() == 8.0
raises_import_error(lambda: viz.plot_mask(window), "llmcore.viz needs matplotlib")
raises_import_error(lambda: viz.mask_explorer(), "llmcore.viz widgets needs ipywidgets")

BLOCKED -= {"matplotlib", "PIL"}  # figures work without ipywidgets
figure = viz.mask_figure(masks.causal_mask, 4)
assert figure.axes[0].images[0].get_array().sum() == 10
assert figure._repr_png_().startswith(b"\x89PNG")
raises_import_error(lambda: viz.mask_explorer(), "llmcore.viz widgets needs ipywidgets")
print("ok")
'''


def test_llmcore_and_viz_work_without_the_course_extra():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr

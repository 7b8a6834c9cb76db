"""The mask explorer works in a real browser: JupyterLab + ipywidgets in headless Chromium.

The test starts a private JupyterLab on 127.0.0.1 (every Jupyter, IPython and matplotlib folder in
pytest's temporary directory), opens a notebook that shows ``viz.mask_explorer`` in Debian's
Chromium driven by Playwright, runs the cell, picks the sliding-window pattern, moves the window
slider with the arrow keys and checks that the slider and the picture both changed. Screenshots
before and after are kept in the temporary directory (their paths are printed). The page may only
talk to the local server: any request elsewhere fails the test.

It needs ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``; CI installs it) and
pip's ``playwright`` (the dev extra). Never ``playwright install``: the test uses Debian's browser.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

import pytest
from lab_server import (
    CHROMIUM,
    LabServer,
    chromium_page,
    free_port,
    is_local,
    jupyter_dirs,
    lab_env,
    running_lab,
    server_args,
)

REPO = Path(__file__).resolve().parents[1]
SKIP_NO_CHROMIUM = "Chromium not installed: apt-get install chromium chromium-driver (see README)"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

if not CHROMIUM.exists():
    pytest.skip(SKIP_NO_CHROMIUM, allow_module_level=True)
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    pytest.skip("playwright not installed: pip install -e '.[dev]' (never `playwright install`)", allow_module_level=True)
for _module in ("jupyterlab", "ipywidgets", "matplotlib"):
    try:
        __import__(_module)
    except ImportError:
        pytest.skip(f"{_module} not installed: pip install -e '.[course]'", allow_module_level=True)


NOTEBOOK_CELL = "from llmcore import viz\nexplorer = viz.mask_explorer(length=16)\nexplorer"
ARROW_PRESSES = 3
TIMEOUT_MS = 60_000


def _write_notebook(path: Path, source: str) -> None:
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "explorer", "metadata": {}, "outputs": [], "source": source}],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))


@pytest.fixture
def lab(tmp_path: Path):
    """A private JupyterLab on 127.0.0.1; stopped by PID whatever happens."""
    dirs = jupyter_dirs(tmp_path)
    # Without this the "news" toast appears even with news_url=None.
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # nbgrader's lab panels read this (from the config dir); without a writable exchange they show errors.
    (dirs["config"] / "nbgrader_config.py").write_text(f"c = get_config()\nc.Exchange.root = {str(dirs['exchange'])!r}\n")

    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab",
        *server_args(port, token),
        f"--ServerApp.root_dir={dirs['root']}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    with running_lab(command, lab_env(dirs), dirs["root"], dirs["root"], tmp_path, port, token) as server:
        yield server


@pytest.fixture
def learner_lab(tmp_path: Path):
    """JupyterLab as `make lab` starts it (python -m grader.lab), on a copy of course/ch01_transformer, with none
    of the settings the `lab` fixture writes: what a learner gets must come from grader/lab/settings/ alone."""
    dirs = jupyter_dirs(tmp_path)
    shutil.copytree(REPO / "course" / "ch01_transformer", dirs["root"] / "ch01_transformer")
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "grader.lab", *server_args(port, token), f"--notebook-dir={dirs['root']}"]
    with running_lab(command, lab_env(dirs), REPO, dirs["root"], tmp_path, port, token) as server:
        yield server


def _picture_src(output) -> str:
    return output.locator(".widget-output img").first.get_attribute("src") or ""


def _selected_label(select) -> str:
    return select.evaluate("element => element.options[element.selectedIndex].text").strip()


def _wait_stable_src(output, different_from: str, quiet: float = 1.0) -> str:
    """The picture once it differs from ``different_from`` and has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    last, since = _picture_src(output), time.monotonic()
    while True:
        time.sleep(0.1)
        current = _picture_src(output)
        if current != last:
            last, since = current, time.monotonic()
        elif current and current != different_from and time.monotonic() - since >= quiet:
            return current
        if time.monotonic() > deadline:
            pytest.fail("the picture never settled on a new image")


def test_mask_explorer_sliding_window_in_chromium(lab: LabServer, tmp_path: Path) -> None:
    started = time.perf_counter()
    expect.set_options(timeout=TIMEOUT_MS)
    _write_notebook(lab.root / "explorer.ipynb", NOTEBOOK_CELL)
    requests: list[str] = []
    outside: list[str] = []
    console_errors: list[str] = []
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    home = tmp_path / "browser-home"
    home.mkdir()

    def record(url: str) -> None:
        requests.append(url)
        if not is_local(url):
            outside.append(url)

    def route(route_) -> None:
        url = route_.request.url
        if is_local(url):
            route_.continue_()
        else:
            route_.abort("blockedbyclient")

    with sync_playwright() as playwright, chromium_page(playwright, tmp_path / "chromium-profile", home, TIMEOUT_MS) as (context, page):
        try:
            context.on("request", lambda request: record(request.url))
            context.route("**/*", route)
            page.on("websocket", lambda socket_: record(socket_.url))
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

            page.goto(f"{lab.url}/lab/tree/explorer.ipynb?token={lab.token}")
            loaded = time.perf_counter()
            # Not the execution indicator: it reads idle before the kernel exists.
            expect(page.locator(".jp-StatusBar-TextItem", has_text="(ipykernel) | Idle").first).to_be_visible()
            idle = time.perf_counter()

            page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
            page.keyboard.press("Shift+Enter")
            output = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-Cell-outputArea")
            dropdown = output.locator(".widget-dropdown select").first
            expect(dropdown).to_be_visible()
            expect(output.locator(".widget-output img").first).to_be_visible()

            # Pick the sliding-window pattern by its label, whatever the exact wording. When it is
            # already selected, leave it for another pattern first: its window slider must hide.
            labels = [label.strip() for label in dropdown.locator("option").all_inner_texts()]
            sliding = [label for label in labels if re.search(r"sliding", label, re.IGNORECASE)]
            assert sliding, f"no sliding-window pattern among the dropdown's options {labels}"
            window = output.locator(".widget-slider:visible").filter(
                has=page.locator(".widget-label", has_text=re.compile("window", re.IGNORECASE))
            )
            picture = _wait_stable_src(output, different_from="")
            if _selected_label(dropdown) == sliding[0]:
                other = next(label for label in labels if not re.search(r"window", label, re.IGNORECASE))
                dropdown.select_option(label=other)
                expect(window).to_have_count(0)
                picture = _wait_stable_src(output, different_from=picture)
            dropdown.select_option(label=sliding[0])
            expect(window).to_have_count(1)
            before_src = _wait_stable_src(output, different_from=picture)
            handle = window.locator(".noUi-handle[role=slider]")
            before_value = float(handle.get_attribute("aria-valuenow"))
            slider_max = float(handle.get_attribute("aria-valuemax"))
            slider_min = float(handle.get_attribute("aria-valuemin"))
            key, target = "ArrowRight", before_value + ARROW_PRESSES
            if target > slider_max:
                key, target = "ArrowLeft", before_value - ARROW_PRESSES
            assert slider_min <= target <= slider_max, f"window slider range {slider_min}..{slider_max} is too small to move"
            before_png = output.locator(".widget-output img").first.screenshot(path=str(screenshots / "picture-before.png"))
            output.screenshot(path=str(screenshots / "before.png"))

            for _ in range(ARROW_PRESSES):
                handle.press(key)
            expect(handle).to_have_attribute("aria-valuenow", re.compile(rf"^{target:g}(\.0+)?$"))
            expect(window.locator(".widget-readout")).to_have_text(f"{target:g}")
            after_src = _wait_stable_src(output, different_from=before_src)
            after_png = output.locator(".widget-output img").first.screenshot(path=str(screenshots / "picture-after.png"))
            output.screenshot(path=str(screenshots / "after.png"))
            after_value = float(handle.get_attribute("aria-valuenow"))
            page.screenshot(path=str(screenshots / "page.png"))
        except BaseException:
            failure = screenshots / "failure.png"
            with contextlib.suppress(Exception):  # never hide the real error behind a dead page
                page.screenshot(path=str(failure))
            print(f"failure screenshot: {failure}\nrequests outside loopback: {outside}\nconsole errors: {console_errors}")
            print(f"JupyterLab log ({lab.log}):\n{lab.log_tail()}")
            raise

    elapsed = time.perf_counter() - started
    print(f"screenshots: {screenshots / 'before.png'} {screenshots / 'after.png'} (page: {screenshots / 'page.png'})")
    print(
        f"browser part {elapsed:.1f} s (page loaded {loaded - started:.1f} s, kernel idle {idle - loaded:.1f} s later), "
        f"{len(requests)} requests, {len(outside)} outside loopback, console errors: {console_errors or 'none'}"
    )
    assert not outside, f"the page asked for something outside loopback: {sorted(set(outside))}"
    assert after_value == target != before_value, f"window slider went {before_value} -> {after_value}, expected {target}"
    assert after_src != before_src, "the picture did not change when the window slider moved"
    assert after_png != before_png, "the picture's screenshot did not change when the window slider moved"
    widget_errors = [text for text in console_errors if "widget" in text.lower() or "model" in text.lower()]
    assert not widget_errors, f"widget errors in the browser console: {widget_errors}"


GLYPHS_JS = """(characters) => {
    const cell = document.querySelector('.jp-RenderedMarkdown') || document.body;
    const font = getComputedStyle(cell).fontFamily;
    return characters.map((character) => {
        const canvas = document.createElement('canvas');
        canvas.width = canvas.height = 40;
        const context = canvas.getContext('2d');
        context.font = `32px ${font}`;
        context.fillText(character, 2, 34);
        return canvas.toDataURL();
    });
}"""


def test_make_lab_is_learner_mode(learner_lab: LabServer, tmp_path: Path) -> None:
    """`make lab` (python -m grader.lab): no nbgrader instructor tools, no news prompt, the Validate button, a course
    notebook that is not "modified" once its kernel runs, and Chinese terms drawn as glyphs, not boxes."""
    sys.path.insert(0, str(REPO))
    from grader.lab.launcher import cjk_font_found

    expect.set_options(timeout=TIMEOUT_MS)
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    outside: list[str] = []
    with sync_playwright() as playwright, chromium_page(playwright, tmp_path / "chromium-profile", tmp_path, TIMEOUT_MS) as (context, page):
        try:
            context.on("request", lambda request: None if is_local(request.url) else outside.append(request.url))
            page.goto(f"{learner_lab.url}/lab/tree/ch01_transformer/01_attention.ipynb?token={learner_lab.token}")
            expect(page.locator(".jp-StatusBar-TextItem", has_text="(ipykernel) | Idle").first).to_be_visible()
            expect(page.locator(".jp-RenderedMarkdown", has_text="注意力").first).to_be_visible()
            time.sleep(3)  # the kernel's language_info arrives after "Idle"; the news prompt would be up by now
            menus = [label.strip() for label in page.locator(".lm-MenuBar-itemLabel").all_inner_texts()]
            toasts = page.locator(".Toastify__toast").all_inner_texts()
            right_tabs = page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tab").evaluate_all(
                "tabs => tabs.map(tab => tab.getAttribute('title') || tab.textContent)"
            )
            toolbar = [label.strip() for label in page.locator(".jp-NotebookPanel-toolbar .jp-ToolbarButtonComponent-label").all_inner_texts()]
            dirty = page.locator(".lm-TabBar-tab.jp-mod-dirty").count()
            glyphs = page.evaluate(GLYPHS_JS, ["注", "意", "力"])
            page.screenshot(path=str(screenshots / "learner-lab.png"))
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(screenshots / "failure.png"))
            print(f"failure screenshot: {screenshots / 'failure.png'}\nJupyterLab log ({learner_lab.log}):\n{learner_lab.log_tail()}")
            raise
    print(f"screenshot: {screenshots / 'learner-lab.png'}; menus {menus}; right side bar {right_tabs}; toolbar {toolbar}")
    assert not outside, f"the page asked for something outside loopback: {sorted(set(outside))}"
    assert menus[:3] == ["File", "Edit", "View"] and "Nbgrader" not in menus, f"menus: {menus}"
    assert not any("Create Assignment" in str(tab) for tab in right_tabs), f"right side bar: {right_tabs}"
    assert "Validate" in toolbar, f"the Validate button is missing from the notebook toolbar: {toolbar}"
    assert not any("news" in toast.lower() for toast in toasts), f"news prompt shown: {toasts}"
    assert dirty == 0, "the notebook shows as modified right after opening"
    if cjk_font_found():
        assert len(set(glyphs)) == 3, "注, 意 and 力 render as the same box: the browser found no CJK font"
    else:
        print(f"no CJK font on this machine: Chinese glyphs not checked (install {'fonts-noto-cjk'})")


def test_validate_shows_the_check_message_only(learner_lab: LabServer, tmp_path: Path) -> None:
    """nbgrader's Validate button in `make lab`: a failing check reads as its message (diagnosis and idea), with
    no traceback through the grader's code."""
    import nbformat

    notebook = nbformat.read(REPO / "solutions" / "ch01_transformer" / "01_attention.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "scaled_dot_product_attention_impl":
            assert "/ math.sqrt(q.shape[-1])" in cell.source
            cell.source = cell.source.replace("/ math.sqrt(q.shape[-1])", "")  # the learner forgot the scale
    nbformat.write(notebook, learner_lab.root / "ch01_transformer" / "forgot_the_scale.ipynb")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright, chromium_page(playwright, tmp_path / "chromium-profile", tmp_path, TIMEOUT_MS) as (_, page):
        try:
            page.goto(f"{learner_lab.url}/lab/tree/ch01_transformer/forgot_the_scale.ipynb?token={learner_lab.token}")
            expect(page.locator(".jp-StatusBar-TextItem", has_text="(ipykernel) | Idle").first).to_be_visible()
            page.locator(".jp-NotebookPanel-toolbar .jp-ToolbarButtonComponent", has_text="Validate").first.click()
            dialog = page.locator(".jp-Dialog", has_text="Diagnosis")
            expect(dialog.first).to_be_visible(timeout=150_000)
            text = dialog.first.inner_text()
            page.screenshot(path=str(tmp_path / "validate.png"))
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"JupyterLab log ({learner_lab.log}):\n{learner_lab.log_tail()}")
            raise
    print(f"screenshot: {tmp_path / 'validate.png'}")
    assert "scaled_dot_product_attention is wrong on case 1 of 5" in text
    assert "Diagnosis: the 1/√d_k scale is missing." in text and "Idea: " in text
    assert "Traceback" not in text and "spec.py" not in text and "framework.py" not in text


def test_rolling_buffer_step_slider_in_chromium(lab: LabServer, tmp_path: Path) -> None:
    """Chapter 5's rolling buffer (notebook 03): moving the step slider redraws the slots, offline."""
    expect.set_options(timeout=TIMEOUT_MS)
    _write_notebook(lab.root / "buffer.ipynb", "from llmcore import viz\nviz.rolling_buffer_viewer(window=4, chunks=[3, 1, 1, 4, 1])")
    outside: list[str] = []
    home = tmp_path / "browser-home"
    home.mkdir()

    def route(route_) -> None:
        if is_local(route_.request.url):
            route_.continue_()
        else:
            outside.append(route_.request.url)
            route_.abort("blockedbyclient")

    with sync_playwright() as playwright, chromium_page(playwright, tmp_path / "chromium-profile", home, TIMEOUT_MS) as (context, page):
        try:
            context.route("**/*", route)
            page.goto(f"{lab.url}/lab/tree/buffer.ipynb?token={lab.token}")
            expect(page.locator(".jp-StatusBar-TextItem", has_text="(ipykernel) | Idle").first).to_be_visible()
            page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first.click()
            page.keyboard.press("Shift+Enter")
            output = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-Cell-outputArea")
            step = output.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text="step"))
            expect(step).to_have_count(1)
            handle = step.locator(".noUi-handle[role=slider]")
            expect(handle).to_have_attribute("aria-valuenow", re.compile(r"^1(\.0+)?$"))
            expect(handle).to_have_attribute("aria-valuemax", re.compile(r"^5(\.0+)?$"))
            first = _wait_stable_src(output, different_from="")
            for _ in range(3):
                handle.press("ArrowRight")
            expect(handle).to_have_attribute("aria-valuenow", re.compile(r"^4(\.0+)?$"))
            fourth = _wait_stable_src(output, different_from=first)
            # Step 4 writes the chunk of 4 (positions 5..8) over every slot: the text under the picture says so.
            expect(output).to_contain_text("positions 5–8 written into slots [0, 1, 2, 3]")
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"failure screenshot: {tmp_path / 'failure.png'}\nJupyterLab log ({lab.log}):\n{lab.log_tail()}")
            raise
    assert fourth != first
    assert not outside, f"the page asked for something outside loopback: {sorted(set(outside))}"

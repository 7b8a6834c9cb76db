"""The formgrader's "Generate Feedback" button in a real browser leaks no hidden test (issue 13, problem 4).

A course folder of the synthetic chapter is graded with ``python -m grader autograde`` (a blank
submission fails every test, so an unsafe feedback would quote the hidden tests in its
tracebacks). JupyterLab is started in the course folder as docs/INSTRUCTORS.md says, Debian's
Chromium opens ``/formgrader``, clicks the chapter's "Generate Feedback" button and waits for the
success dialog; the pages written must show no hidden test and carry the status banner. The
formgrader's Autograde (its API, as its button calls it) must refuse with the command to use.

Needs ``/usr/bin/chromium`` and pip's ``playwright`` (never ``playwright install``); skipped otherwise.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from pathlib import Path

import pytest

import nbg_synthetic as syn
from lab_server import CHROMIUM, chromium_page, free_port, is_local, jupyter_dirs, lab_env, running_lab, server_args
from nbg_cli import grader
from nbg_helpers import with_solutions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore::nbformat.warnings.MissingIDFieldWarning")]

if not CHROMIUM.exists():
    pytest.skip("Chromium not installed: apt-get install chromium chromium-driver (see README)", allow_module_level=True)
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    pytest.skip("playwright not installed: pip install -e '.[dev]' (never `playwright install`)", allow_module_level=True)
try:
    import jupyterlab  # noqa: F401
except ImportError:
    pytest.skip("jupyterlab not installed: pip install -e '.[course]'", allow_module_level=True)

CHAPTER = syn.CHAPTER
A, T = "01_arithmetic", "02_text"
HIDDEN = ["add(-1, 1)", "mul(-2, 4)", 'shout("")', "BEGIN HIDDEN TESTS"]
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    root = tmp_path_factory.mktemp("formgrader")
    course, release, source = syn.release_chapter(root)
    inbox = root / "inbox"
    syn.write_submissions(inbox, {"blank": release, "complete": {n: with_solutions(release[n], source[n]) for n in (A, T)},
                                  "half": {A: release[A]}})
    run = grader("autograde", CHAPTER, "--course-dir", course, "--submissions", inbox, "--jobs", 1,
                 "--cell-timeout", 10, "--notebook-timeout", 60)
    assert run.rc == 0, run.err
    return root, course


@pytest.fixture(scope="module")
def lab(graded_course):
    root, course = graded_course
    dirs = jupyter_dirs(root)
    home = root / "home"
    home.mkdir()
    port, token = free_port(), secrets.token_hex(16)
    env = {**lab_env(dirs), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # as docs/INSTRUCTORS.md says: JupyterLab started in the course folder
    command = [sys.executable, "-m", "jupyterlab", *server_args(port, token), f"--ServerApp.root_dir={course}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    with running_lab(command, env, course, root, root, port, token) as server:
        yield {"url": server.url, "token": token, "course": course, "log": server.log, "home": home, "root": root}


def _pages(course):
    return {str(p.relative_to(course / "feedback")): p.read_text()
            for p in (course / "feedback").glob(f"*/{CHAPTER}/*.html")}


def test_generate_feedback_button_writes_safe_feedback(lab):
    course = lab["course"]
    assert not (course / "feedback").exists() or not _pages(course)
    expect.set_options(timeout=TIMEOUT_MS)

    def route(route_):
        if is_local(route_.request.url):
            route_.continue_()
        else:
            route_.abort("blockedbyclient")

    with sync_playwright() as playwright, \
            chromium_page(playwright, lab["root"] / "chromium-profile", lab["home"], TIMEOUT_MS) as (context, page):
        try:
            context.route("**/*", route)
            page.goto(f"{lab['url']}/formgrader/manage_assignments?token={lab['token']}")
            row = page.locator("tr", has=page.locator("td", has_text=CHAPTER)).first
            button = row.locator(".generate-feedback a")
            expect(button).to_be_visible()
            button.click()
            expect(page.locator("#success-modal")).to_be_visible()
            page.screenshot(path=str(lab["root"] / "formgrader-feedback.png"))
        except BaseException:
            page.screenshot(path=str(lab["root"] / "formgrader-failure.png"))
            print(lab["log"].read_text()[-4000:])
            raise

    pages = _pages(course)
    assert f"blank/{CHAPTER}/{A}.html" in pages
    for name, html in pages.items():
        for hidden in HIDDEN:
            assert hidden not in html, (name, hidden)
        assert "llmcore-status" in html and "cdnjs" not in html, name
    assert {f"{s}/{CHAPTER}/{n}.html" for s in ("blank", "complete", "half") for n in (A, T)} <= set(pages)
    assert "not submitted" in pages[f"half/{CHAPTER}/{T}.html"]
    assert "NotImplementedError" in pages[f"blank/{CHAPTER}/{A}.html"]  # the message, without the test's source


def test_formgrader_autograde_refuses_with_the_command_to_use(lab):
    request = urllib.request.Request(
        f"{lab['url']}/formgrader/api/submission/{CHAPTER}/complete/autograde?token={lab['token']}",
        data=b"", method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        result = json.loads(response.read())
    assert result["success"] is False
    assert "python -m grader autograde" in result.get("log", "") + result.get("error", "")

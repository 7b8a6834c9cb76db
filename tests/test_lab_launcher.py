"""`make lab` / `make instructor-lab` (python -m grader.lab): learner mode, the font warning, notebooks that open unmodified.

The browser side (menus, news prompt, modified marker, Chinese glyphs) is
tests/test_browser_widgets.py::test_make_lab_is_learner_mode.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.lab import launcher as lab
from grader.lab.contents import CourseContentsManager, complete_language_info, kernel_language_info

REPO = Path(__file__).resolve().parents[1]
NBGRADER_PLUGINS = {"menu", "formgrader", "assignment-list", "course-list", "create-assignment", "validate-assignment"}


# -- the font check ------------------------------------------------------------------------------------


def test_a_chinese_font_is_found_by_fontconfig_or_by_its_file_name(tmp_path: Path) -> None:
    assert lab.cjk_font_found(fc_list=lambda: "Noto Sans CJK SC,Noto Sans CJK SC Regular\n", platform="linux")
    assert not lab.cjk_font_found(fc_list=lambda: "", platform="linux")
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    (fonts / "DejaVuSans.ttf").write_bytes(b"")
    assert not lab.cjk_font_found(fc_list=lambda: None, dirs=[str(fonts)], platform="linux")  # no fc-list: file names
    (fonts / "opentype" / "noto").mkdir(parents=True)
    (fonts / "opentype" / "noto" / "NotoSansCJK-Regular.ttc").write_bytes(b"")
    assert lab.cjk_font_found(fc_list=lambda: None, dirs=[str(fonts)], platform="linux")
    assert lab.cjk_font_found(fc_list=lambda: "", platform="darwin")  # macOS and Windows ship one


def test_no_font_gives_one_warning_line_naming_the_package(monkeypatch, capsys) -> None:
    monkeypatch.setattr(lab, "cjk_font_found", lambda: False)
    assert lab.main(["--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fonts-noto-cjk" in err and "boxes" in err
    monkeypatch.setattr(lab, "cjk_font_found", lambda: True)
    lab.main(["--dry-run"])
    assert capsys.readouterr().err == ""


def test_the_readme_and_ci_name_the_font_package() -> None:
    assert "fonts-noto-cjk" in (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "packages+=(fonts-noto-cjk)" in ci and 'apt-get install -y --no-install-recommends "${packages[@]}"' in ci


# -- the command ---------------------------------------------------------------------------------------


def test_learner_mode_opens_course_with_the_learner_settings_first() -> None:
    command, env = lab.lab_command(False, None, ["--port=9999"], {"JUPYTER_CONFIG_PATH": "/theirs"})
    assert command[1:4] == ["-m", "jupyterlab", f"--notebook-dir={REPO / 'course'}"] and command[-1] == "--port=9999"
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(lab.LEARNER), str(lab.COMMON), "/theirs"]
    command, _ = lab.lab_command(False, None, ["--notebook-dir=/elsewhere"], {})
    assert [arg for arg in command if arg.startswith("--notebook-dir")] == ["--notebook-dir=/elsewhere"]


def test_instructor_mode_keeps_nbgrader_and_opens_the_repository_or_a_course_folder(tmp_path: Path) -> None:
    command, env = lab.lab_command(True, None, [], {})
    assert f"--notebook-dir={REPO}" in command and env["JUPYTER_CONFIG_PATH"] == str(lab.COMMON)
    command, _ = lab.lab_command(True, tmp_path, [], {})
    assert f"--notebook-dir={tmp_path.resolve()}" in command
    with pytest.raises(SystemExit):
        lab.main(["--course-dir", str(tmp_path)])  # a course folder is an instructor's
    with pytest.raises(SystemExit):
        lab.main(["--instructor", "--course-dir", str(tmp_path / "missing"), "--dry-run"])


def test_the_makefile_starts_both_labs_through_grader_lab() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^lab: install-course\n\t\$\(PY\) -m grader\.lab \$\(LAB_ARGS\)$", makefile, re.MULTILINE)
    assert re.search(r"^instructor-lab: install-course\n\t\$\(PY\) -m grader\.lab --instructor ", makefile, re.MULTILINE)


# -- the settings --------------------------------------------------------------------------------------


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_learner_settings_hide_the_instructor_tools_and_keep_validate() -> None:
    disabled = _json(lab.LEARNER / "labconfig" / "page_config.json")["disabledExtensions"]
    assert {name.split(":")[1] for name, off in disabled.items() if off} == NBGRADER_PLUGINS - {"validate-assignment"}
    extensions = _json(lab.LEARNER / "jupyter_server_config.json")["ServerApp"]["jpserver_extensions"]
    assert extensions == {f"nbgrader.server_extensions.{name}": False for name in ("formgrader", "assignment_list", "course_list")}


def test_the_disabled_names_exist_in_the_installed_nbgrader() -> None:
    pytest.importorskip("nbgrader")
    from jupyter_core.paths import jupyter_path

    found = [Path(folder) / "@jupyter" / "nbgrader" for folder in jupyter_path("labextensions")]
    share = next((folder for folder in found if folder.is_dir()), None)
    if share is None:
        pytest.skip(f"nbgrader's lab extension is in none of {found}")
    source = "".join(path.read_text(errors="replace") for path in (share / "static").glob("*.js"))
    plugins = set(re.findall(r'"@jupyter/nbgrader:([a-z-]+)"', source))
    assert NBGRADER_PLUGINS <= plugins, f"nbgrader's plugins are now {sorted(plugins)}"
    for name in _json(lab.LEARNER / "jupyter_server_config.json")["ServerApp"]["jpserver_extensions"]:
        __import__(name)


def test_both_modes_turn_off_news_and_update_checks() -> None:
    lab_app = _json(lab.COMMON / "jupyter_server_config.json")["LabApp"]
    assert lab_app == {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}
    notification = _json(lab.COMMON / "labconfig" / "default_setting_overrides.json")["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}


# -- notebooks open unmodified -------------------------------------------------------------------------


def test_the_bare_language_info_is_completed_and_nothing_else_is_touched() -> None:
    full = kernel_language_info()
    bare = {"metadata": {"kernelspec": {"name": "python3"}, "language_info": {"name": "python"}}}
    assert complete_language_info(bare, full) and bare["metadata"]["language_info"] == full
    saved = {"metadata": {"kernelspec": {"name": "python3"}, "language_info": {**full, "version": "3.0.0"}}}
    assert not complete_language_info(saved, full) and saved["metadata"]["language_info"]["version"] == "3.0.0"
    other = {"metadata": {"kernelspec": {"name": "ir"}, "language_info": {"name": "R"}}}
    assert not complete_language_info(other, full)


def _ipykernel_language_info() -> dict:
    """ipykernel's own language_info, read in a subprocess (importing ipykernel here would leave its comm
    manager behind for every ipywidgets widget other tests create, and noise at interpreter exit)."""
    pytest.importorskip("ipykernel")
    code = "import json; from ipykernel.ipkernel import IPythonKernel; print(json.dumps(IPythonKernel.language_info))"
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_course_notebooks_read_through_the_manager_carry_the_kernels_language_info(tmp_path: Path) -> None:
    expected = _ipykernel_language_info()
    assert kernel_language_info() == expected
    source = REPO / "course" / "ch01_transformer" / "01_attention.ipynb"
    (tmp_path / "01_attention.ipynb").write_bytes(source.read_bytes())
    manager = CourseContentsManager(root_dir=str(tmp_path))
    model = asyncio.run(manager.get("01_attention.ipynb"))
    assert model["content"]["metadata"]["language_info"] == expected
    assert (tmp_path / "01_attention.ipynb").read_bytes() == source.read_bytes()  # the file is not rewritten
    assert nbformat.read(source, as_version=4).metadata["language_info"] == {"name": "python"}


def test_the_server_runs_where_nbgrader_finds_the_right_config(tmp_path: Path) -> None:
    """The formgrader reads nbgrader_config.py from the server's working folder: the course folder's own."""
    assert lab.server_folder(True, tmp_path) == tmp_path.resolve()
    assert lab.server_folder(True, None) == REPO
    assert lab.server_folder(False, None) == REPO

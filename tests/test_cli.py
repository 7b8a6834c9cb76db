"""The instructor command's interface: help, course folders, configuration and error messages."""
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

import nbg_synthetic
from grader.nbgrader_setup import CODE_STUB
from nbg_cli import grader

REPO_ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ["generate", "init", "release", "collect", "autograde", "report", "feedback", "export"]


def test_module_entry_point_lists_every_subcommand():
    result = subprocess.run(
        [sys.executable, "-m", "grader", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in SUBCOMMANDS)


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_has_help(subcommand):
    run = grader(subcommand, "--help")
    assert run.rc == 0
    assert run.out.startswith(f"usage: python -m grader {subcommand}")


def test_missing_arguments_are_a_usage_error():
    run = grader("release", "ch01_transformer")
    assert run.rc == 2
    assert "--course-dir" in run.err


def test_repository_config_keeps_instructor_files_out_of_the_release():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO_ROOT)).load_config()
    course_dir = config.CourseDirectory
    assert (course_dir.root, course_dir.source_directory, course_dir.release_directory) == (
        str(REPO_ROOT), "solutions", "course",
    )
    instructor = REPO_ROOT / "instructor"
    private = [course_dir.submitted_directory, course_dir.autograded_directory, course_dir.feedback_directory,
               course_dir.solution_directory, course_dir.db_url.removeprefix("sqlite:///"), config.Exchange.root]
    for path in private:
        assert instructor in (REPO_ROOT / path).parents, path
    assert config.ClearSolutions.code_stub == {"python": CODE_STUB}
    assert config.OverwriteCells.add_missing_cells is True
    assert config.Execute.timeout >= 60
    assert {".ipynb_checkpoints", "__pycache__"} <= set(course_dir.ignore)


def test_init_writes_a_config_that_keeps_everything_in_the_course_folder(tmp_path):
    course = tmp_path / "course"
    run = grader("init", course)
    assert run.rc == 0, run.err
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    assert config.CourseDirectory.root == str(course)
    assert config.CourseDirectory.db_url == f"sqlite:///{course / 'gradebook.db'}"
    assert config.Exchange.root == str(course / "exchange")
    assert config.CourseDirectory.submitted_directory == "submitted"
    assert config.OverwriteCells.add_missing_cells is True


def test_init_refuses_an_existing_course_folder(tmp_path):
    assert grader("init", tmp_path / "course").rc == 0
    run = grader("init", tmp_path / "course")
    assert run.rc == 1
    assert "already a course folder" in run.err


def test_init_refuses_a_folder_inside_the_repository():
    run = grader("init", REPO_ROOT / "instructor" / "course")
    assert run.rc == 1
    assert "inside the course repository" in run.err
    assert not (REPO_ROOT / "instructor" / "course").exists()


def test_commands_on_a_folder_that_is_not_a_course_suggest_init(tmp_path):
    run = grader("autograde", "ch01_transformer", "--course-dir", tmp_path)
    assert run.rc == 1
    assert "is not a course folder" in run.err and "python -m grader init" in run.err


@pytest.fixture
def course(tmp_path):
    """An initialised course folder and a solutions folder holding the synthetic chapter."""
    nbg_synthetic.write_chapter(tmp_path / "solutions")
    assert grader("init", tmp_path / "course").rc == 0
    return tmp_path / "course", tmp_path / "solutions"


def test_release_of_an_unknown_chapter_lists_the_available_ones(course):
    course_dir, solutions = course
    run = grader("release", "ch99_nope", "--course-dir", course_dir, "--solutions", solutions)
    assert run.rc == 1
    assert "no chapter 'ch99_nope'" in run.err and nbg_synthetic.CHAPTER in run.err


def test_autograde_before_release_says_so(course):
    course_dir, _ = course
    run = grader("autograde", nbg_synthetic.CHAPTER, "--course-dir", course_dir)
    assert run.rc == 1
    assert "never released" in run.err


def test_submissions_with_an_unusable_student_id_are_refused(course, tmp_path):
    course_dir, solutions = course
    assert grader("release", nbg_synthetic.CHAPTER, "--course-dir", course_dir, "--solutions", solutions).rc == 0
    bad = tmp_path / "inbox" / "john doe"
    bad.mkdir(parents=True)
    (bad / "01_arithmetic.ipynb").write_text("{}")
    run = grader("autograde", nbg_synthetic.CHAPTER, "--course-dir", course_dir, "--submissions", tmp_path / "inbox")
    assert run.rc == 1
    assert "'john doe' is not a usable student id" in run.err
    assert not any((course_dir / "submitted").iterdir())


def test_export_of_an_unreleased_chapter_is_refused(course, tmp_path):
    course_dir, _ = course
    run = grader("export", "--course-dir", course_dir, "--to", tmp_path / "grades.csv", "--chapter", "ch42_x")
    assert run.rc == 1
    assert "not released in this course folder: ch42_x" in run.err
    assert not (tmp_path / "grades.csv").exists()


def test_init_config_makes_every_nbgrader_entry_point_safe(tmp_path):
    from nbgrader.preprocessors import ClearHiddenTests

    from grader.feedback import FeedbackExporter, HideTestTracebacks, StatusBanner
    from grader.refusals import RefuseAutograde

    course = tmp_path / "course"
    assert grader("init", course).rc == 0
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    preprocessors = config.GenerateFeedback.preprocessors
    assert {ClearHiddenTests, HideTestTracebacks, StatusBanner} <= set(preprocessors)
    assert preprocessors.index(ClearHiddenTests) < preprocessors.index(HideTestTracebacks)
    assert config.GenerateFeedback.exporter_class is FeedbackExporter
    assert config.Autograde.autograde_preprocessors == [RefuseAutograde]
    secret = course / "course_secret.txt"
    assert secret.is_file() and secret.stat().st_mode & 0o077 == 0


def test_init_on_a_course_folder_without_a_secret_adds_one(tmp_path):
    course = tmp_path / "course"
    assert grader("init", course).rc == 0
    (course / "course_secret.txt").unlink()
    run = grader("init", course)
    assert run.rc == 0 and "added a course secret" in run.out
    assert len((course / "course_secret.txt").read_text().strip()) == 64

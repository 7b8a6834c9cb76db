"""``python -m grader``: the instructor command (generate the course, then grade a chapter).

Exit status: 0 on success; 1 when the command failed or some notebooks could not
be graded (the others are still graded); 2 on a usage error.
"""
import argparse
import sys
import warnings
from pathlib import Path

from grader.course_folder import REPO_ROOT, SOLUTIONS_DIR
from grader.errors import GraderError

EXIT_OK, EXIT_FAILED = 0, 1

DESCRIPTION = """\
Instructor command of the llmcore course.

Typical session:
  python -m grader generate                      # solutions/ -> course/ (commit the result)
  python -m grader init ~/llm-grading            # once per course folder, outside the repo
  python -m grader release ch01_transformer --course-dir ~/llm-grading
  python -m grader autograde ch01_transformer --course-dir ~/llm-grading --submissions ./inbox
  python -m grader feedback ch01_transformer --course-dir ~/llm-grading
  python -m grader export --course-dir ~/llm-grading --to grades.csv
"""
EPILOG = "exit status: 0 success, 1 failure (message on stderr), 2 usage error"


def cmd_generate(args):
    from grader.generate import generate_course

    chapters, stale = generate_course(args.solutions, args.course, args.chapters or None)
    if not chapters:
        print(f"no chapters (chNN_* folders with notebooks) in {args.solutions}")
    for chapter in chapters:
        print(f"generated {Path(args.course) / chapter}")
    for chapter in stale:
        print(f"removed {Path(args.course) / chapter} (no source in {args.solutions})")
    return EXIT_OK


def cmd_init(args):
    from grader.course_folder import init_course

    course_dir = init_course(args.course_dir)
    print(f"created course folder {course_dir}")
    return EXIT_OK


def cmd_release(args):
    from grader.course_folder import release_chapter

    release = release_chapter(args.course_dir, args.chapter, args.solutions)
    print(f"released {args.chapter}: {release}")
    return EXIT_OK


def cmd_autograde(args):
    from grader.grading import autograde_chapter, import_submissions

    students = None
    if args.submissions:
        students = import_submissions(args.course_dir, args.chapter, args.submissions)
        print(f"imported {len(students)} submissions: {', '.join(students)}")
    students, failures = autograde_chapter(args.course_dir, args.chapter, students)
    print(f"autograded {args.chapter} for {len(students)} students; {len(failures)} notebooks failed")
    for failure in failures:
        where = f"{failure.student_id}/{failure.notebook or '*'}"
        print(f"could not grade {where}: {failure.reason}", file=sys.stderr)
        if args.verbose:
            print(failure.log, file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_feedback(args):
    from grader.grading import generate_feedback

    files = generate_feedback(args.course_dir, args.chapter)
    print(f"wrote {len(files)} feedback files for {args.chapter}")
    return EXIT_OK


def cmd_export(args):
    from grader.export import export_grades

    count = export_grades(args.course_dir, args.to, args.chapters or None)
    print(f"wrote {count} rows to {args.to}")
    return EXIT_OK


def build_parser():
    """The argument parser of ``python -m grader`` and its subcommands."""
    from grader.export import COLUMNS_HELP

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m grader", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, help_text, epilog=EPILOG):
        sub = commands.add_parser(
            name, help=help_text, description=help_text, epilog=epilog, formatter_class=formatter
        )
        sub.set_defaults(handler=handler)
        return sub

    def chapter_and_course_dir(sub):
        sub.add_argument("chapter", metavar="CHAPTER", help="chapter folder name, e.g. ch01_transformer")
        sub.add_argument("--course-dir", required=True, type=Path, help="course folder made by `init`")

    def solutions_option(sub):
        sub.add_argument(
            "--solutions", type=Path, default=SOLUTIONS_DIR, help="source notebooks (default: %(default)s)"
        )

    sub = command("generate", cmd_generate, "regenerate the student release course/ from solutions/")
    sub.add_argument(
        "chapters", nargs="*", metavar="CHAPTER", help="chapters to regenerate (default: all chNN_* in solutions/)"
    )
    solutions_option(sub)
    sub.add_argument(
        "--course", type=Path, default=REPO_ROOT / "course", help="release folder (default: %(default)s)"
    )

    sub = command("init", cmd_init, "create an instructor course folder (outside the repository)")
    sub.add_argument("course_dir", metavar="COURSE_DIR", type=Path, help="folder to create")

    sub = command("release", cmd_release, "snapshot a chapter's solutions into a course folder, generate its release")
    chapter_and_course_dir(sub)
    solutions_option(sub)

    sub = command("autograde", cmd_autograde, "import submissions (optional) and autograde a chapter")
    chapter_and_course_dir(sub)
    sub.add_argument(
        "--submissions", type=Path, metavar="FOLDER",
        help="import FOLDER/<student_id>/<notebook>.ipynb or FOLDER/<student_id>/CHAPTER/<notebook>.ipynb, "
        "replacing those students' previous submissions, and grade only them "
        "(default: grade every submission in the course folder)",
    )
    sub.add_argument("-v", "--verbose", action="store_true", help="print nbgrader's log of failed notebooks")

    sub = command("feedback", cmd_feedback, "write feedback HTML for every autograded submission of a chapter")
    chapter_and_course_dir(sub)

    sub = command("export", cmd_export, "export grades as CSV", epilog=f"{COLUMNS_HELP}\n\n{EPILOG}")
    sub.add_argument("--course-dir", required=True, type=Path, help="course folder made by `init`")
    sub.add_argument("--to", required=True, type=Path, metavar="CSV", help="file to write")
    sub.add_argument(
        "--chapter", dest="chapters", action="append", metavar="CHAPTER", help="only this chapter (repeatable)"
    )
    return parser


def main(argv=None):
    """Run the command line ``argv``; return the exit status."""
    args = build_parser().parse_args(argv)
    # nbgrader's own queries trigger SQLAlchemy 2.x warnings the instructor cannot act on.
    warnings.filterwarnings("ignore", module=r"nbgrader\..*")
    try:
        return args.handler(args)
    except GraderError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED

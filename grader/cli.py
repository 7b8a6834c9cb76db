"""``python -m grader``: the instructor command (generate the course, then grade a chapter).

Exit status: 0 on success; 1 when the command failed or some notebooks could not
be graded (the others are still graded); 2 on a usage error.
"""
import argparse
import sys
import warnings
from pathlib import Path

from grader.collect_pattern import DEFAULT_PATTERN
from grader.course_folder import REPO_ROOT, SOLUTIONS_DIR
from grader.errors import GraderError

EXIT_OK, EXIT_FAILED = 0, 1

DESCRIPTION = """\
Instructor command of the llmcore course.

Typical session:
  python -m grader generate                      # solutions/ -> course/ (commit the result)
  python -m grader init ~/llm-grading            # once per course folder, outside the repo
  python -m grader release ch01_transformer --course-dir ~/llm-grading
  python -m grader collect ch01_transformer --course-dir ~/llm-grading ~/Downloads/ch01.zip
  python -m grader autograde ch01_transformer --course-dir ~/llm-grading --jobs 4
  python -m grader report ch01_transformer --course-dir ~/llm-grading --csv summary.csv
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

    course_dir, created = init_course(args.course_dir)
    if created:
        print(f"created course folder {course_dir} (keep gradebook.db and course_secret.txt private)")
    else:
        print(f"added a course secret to the course folder {course_dir}: hidden checks are graded with "
              "cases the class cannot reproduce from now on (regrade to apply it to earlier grades)")
    return EXIT_OK


def cmd_release(args):
    from grader.course_folder import release_chapter

    release = release_chapter(args.course_dir, args.chapter, args.solutions)
    print(f"released {args.chapter}: {release}")
    return EXIT_OK


def cmd_collect(args):
    from grader.collect import LMS_PATTERNS, collect
    from grader.course_folder import course_api
    from grader.grading import _check_released

    released = _check_released(course_api(args.course_dir), args.chapter)
    pattern = args.pattern or LMS_PATTERNS.get(args.lms) or DEFAULT_PATTERN
    done = collect(args.course_dir, args.chapter, args.source, pattern, released, replace=args.replace)
    count = len(done.students)
    print(f"collected {count} submission{'s' * (count != 1)} of {args.chapter}: {', '.join(done.students)}"
          + (" (whole submissions replaced)" if args.replace else " (merged: earlier notebooks kept)"))
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    for name in done.unrecognised:
        print(f"unrecognised: {name}", file=sys.stderr)
    for warning in done.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if done.warnings:
        print(f"{len(done.warnings)} warning(s): a student above would be graded without a notebook; "
              "fix the files and collect again" + ("" if args.strict else " (--strict makes this an error)"),
              file=sys.stderr)
    return EXIT_FAILED if args.strict and (done.warnings or done.unrecognised) else EXIT_OK


def cmd_autograde(args):
    from grader.grading import FAILED_STATUSES, Limits, autograde_chapter, import_submissions

    students = args.students or None
    if args.submissions:
        students = import_submissions(args.course_dir, args.chapter, args.submissions)
        print(f"imported {_plural(len(students), 'submission')}: {', '.join(students)}")
    limits = Limits(
        cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout, memory_mb=args.memory_mb,
        max_output_kb=args.max_output_kb, isolate_network=not args.allow_network,
    )

    def progress(student, batch):
        if args.verbose:
            print(f"  {student}: " + ", ".join(f"{r['notebook']} {r['score']:g}/{r['max_score']:g} {r['status']}"
                                               for r in batch), flush=True)

    results = autograde_chapter(args.course_dir, args.chapter, students, args.jobs, limits, progress)
    graded_students = sorted({r["student_id"] for r in results})
    failed = [r for r in results if r["status"] in FAILED_STATUSES]
    tampered = [r for r in results if r["status"] == "tampered"]
    missing = [r for r in results if r["status"] == "missing"]
    lost = [r for r in missing if r["detail"].startswith(f"no {r['notebook']}.ipynb submitted; the submission has")]
    print(f"autograded {args.chapter} for {_plural(len(graded_students), 'student')}; "
          f"{_plural(len(failed), 'notebook')} could not be graded fully; {len(tampered)} tampered; "
          f"{len(missing)} missing")
    for r in failed:
        print(f"could not grade {r['student_id']}/{r['notebook']}: {r['status']}: {r['detail']}", file=sys.stderr)
    for r in tampered:
        print(f"tampered {r['student_id']}/{r['notebook']}: {r['detail']} (see `report`)", file=sys.stderr)
    for r in missing:
        print(f"missing {r['student_id']}/{r['notebook']}: {r['detail']}", file=sys.stderr)
    return EXIT_FAILED if failed or lost else EXIT_OK


def cmd_report(args):
    from grader.course_folder import course_api
    from grader.export import COLUMNS, export_grades, write_csv
    from grader.grading import _check_released
    from grader.summary import format_summary, summarise

    _check_released(course_api(args.course_dir), args.chapter)
    table, averages, entries, problems, rows = summarise(args.course_dir, args.chapter)
    print(format_summary(args.chapter, table, averages, entries, problems, rows))
    if args.csv:
        count, warnings = export_grades(args.course_dir, args.csv, [args.chapter], "wide", args.lms_ids, args.precision)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"wrote {_plural(count, 'student')} to {args.csv}")
    if args.status_csv:
        write_csv(args.status_csv, rows, COLUMNS)
        print(f"wrote {_plural(len(rows), 'notebook status', 'notebook statuses')} to {args.status_csv}")
    if args.entries_csv:
        write_csv(args.entries_csv, entries, ["chapter", "student_id", "notebook", "cell", "kind", "severity", "detail"])
        print(f"wrote {_plural(len(entries), 'report entry', 'report entries')} to {args.entries_csv}")
    return EXIT_FAILED if problems else EXIT_OK


def _plural(count, singular, plural=None):
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def cmd_feedback(args):
    from grader.grading import generate_feedback

    files = generate_feedback(args.course_dir, args.chapter)
    print(f"wrote {len(files)} feedback files for {args.chapter}")
    return EXIT_OK


def cmd_export(args):
    from grader.export import export_grades

    count, warnings = export_grades(args.course_dir, args.to, args.chapters or None, args.format, args.lms_ids,
                                    args.precision)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    what = "row" if args.format == "long" else "student"
    print(f"wrote {_plural(count, what)} to {args.to} ({args.format} format)")
    return EXIT_OK


def build_parser():
    """The argument parser of ``python -m grader`` and its subcommands."""
    from grader.collect import LMS_PATTERNS
    from grader.export import COLUMNS_HELP, FORMATS
    from grader.grading import Limits

    limits = Limits()

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

    def lms_options(sub):
        sub.add_argument("--lms-ids", type=Path, metavar="CSV",
                         help="CSV with columns student_id, lms_id (optional: name, section) mapping course ids to "
                         "the LMS's")
        sub.add_argument("--precision", type=int, default=2, metavar="N",
                         help="decimals of a score that is not whole (default: %(default)s)")

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

    sub = command("collect", cmd_collect, "import submissions from a folder or an LMS zip download")
    chapter_and_course_dir(sub)
    sub.add_argument("source", metavar="FOLDER_OR_ZIP", type=Path, help="folder or .zip of submissions")
    sub.add_argument(
        "--lms", choices=sorted(LMS_PATTERNS),
        help="file layout of this LMS's submission download (a preset --pattern; see docs/INSTRUCTORS.md)",
    )
    sub.add_argument(
        "--pattern", default=None,
        help="regular expression (nbgrader zip_collect's named_regexp) matched against each file's full "
        "path, with groups student_id and file_id; file_id may carry LMS prefixes and suffixes, it is "
        "matched to a notebook name (default: <student_id>/[<chapter>/]<notebook>.ipynb at any depth: "
        f"{DEFAULT_PATTERN})".replace("%", "%%"),
    )
    sub.add_argument("--replace", action="store_true",
                     help="replace each collected student's whole submission (default: merge, a new file "
                     "replaces only its notebook)")
    sub.add_argument("--strict", action="store_true",
                     help="exit 1 when a collected student lacks a notebook or a file was not recognised")

    sub = command("autograde", cmd_autograde, "autograde a chapter in parallel, notebook by notebook, under limits")
    chapter_and_course_dir(sub)
    sub.add_argument(
        "--submissions", type=Path, metavar="FOLDER",
        help="import FOLDER/<student_id>/<notebook>.ipynb or FOLDER/<student_id>/CHAPTER/<notebook>.ipynb, "
        "replacing those students' previous submissions, and grade only them "
        "(default: grade every submission in the course folder)",
    )
    sub.add_argument("--student", dest="students", action="append", metavar="ID",
                     help="(re)grade only this student's submission (repeatable; default: every submission)")
    sub.add_argument("-j", "--jobs", type=int, default=None,
                     help="students graded in parallel (default: number of cores)")
    sub.add_argument("--cell-timeout", type=int, default=limits.cell_timeout, metavar="S",
                     help="seconds one cell may run; it is then interrupted (default: %(default)s)")
    sub.add_argument("--notebook-timeout", type=int, default=limits.notebook_timeout, metavar="S",
                     help="wall-clock seconds for one notebook; its kernel is then killed (default: %(default)s)")
    sub.add_argument("--memory-mb", type=int, default=limits.memory_mb, metavar="MB",
                     help="address-space limit of a kernel, 0 for none (default: %(default)s)")
    sub.add_argument("--max-output-kb", type=int, default=limits.max_output_kb, metavar="KB",
                     help="output kept per notebook; the rest is dropped (default: %(default)s)")
    sub.add_argument("--allow-network", action="store_true",
                     help="do not run kernels in a network namespace of their own (unshare -n)")
    sub.add_argument("-v", "--verbose", action="store_true", help="print each student's results as they come")

    sub = command("report", cmd_report,
                  "summary table (students x notebooks, per-exercise averages) and the tamper and cheat report")
    chapter_and_course_dir(sub)
    sub.add_argument("--csv", type=Path, metavar="CSV",
                     help="also write the grades here, one row per student (export's wide format)")
    sub.add_argument("--status-csv", type=Path, metavar="CSV",
                     help="also write one row per student x notebook: score, status, reason, seconds, tests changed")
    sub.add_argument("--entries-csv", type=Path, metavar="CSV", help="also write the report entries here")
    lms_options(sub)

    sub = command("feedback", cmd_feedback, "write feedback HTML for every autograded submission of a chapter")
    chapter_and_course_dir(sub)

    sub = command("export", cmd_export, "export grades as CSV", epilog=f"{COLUMNS_HELP}\n\n{EPILOG}")
    sub.add_argument("--course-dir", required=True, type=Path, help="course folder made by `init`")
    sub.add_argument("--to", required=True, type=Path, metavar="CSV", help="file to write")
    sub.add_argument("--format", choices=FORMATS, default="wide", help="layout of the file (default: %(default)s)")
    lms_options(sub)
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

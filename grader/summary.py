"""The summary of a chapter: students x notebooks, statuses with their reasons and times, per-exercise
averages, the tamper and cheat report."""
from collections import defaultdict

from grader.course_folder import course_api
from grader.export import grade_rows, number

SHORT = {"graded": "", "tampered": " T!", "missing": " -", "malformed": " M!", "timed_out": " TO",
         "kernel_died": " KD", "not_graded": " ?"}
CHANGED_MARK = " *"
LEGEND = ("T! tampered (graded after restoring the tests)  - missing  M! malformed  TO timed out  "
          "KD kernel died  ? not graded  * tests changed since grading: regrade")


def summarise(course_dir, chapter):
    """``(table_rows, exercise_averages, entries, problems, notebook_rows)`` for ``chapter``.

    table_rows: one dict per student (``student_id``, then ``<notebook>`` score, ``<notebook>_status``
    and ``<notebook>_changed`` per notebook, and ``total``/``max``); exercise_averages:
    ``[(notebook, cell, average, max, n)]`` over the notebooks that were graded; entries: the report
    entries; problems: gradebook integrity; notebook_rows: the export's long rows (status, detail,
    seconds, tests_changed) of the chapter.
    """
    from grader import report

    coursedir = course_api(course_dir).coursedir
    rows = list(grade_rows(course_dir, [chapter]))
    table = {}
    for row in rows:
        line = table.setdefault(row["student_id"], {"student_id": row["student_id"], "total": 0.0, "max": 0.0})
        line[row["notebook"]] = row["score"]
        line[f"{row['notebook']}_status"] = row["status"]
        line[f"{row['notebook']}_changed"] = row["tests_changed"]
        line["total"] += float(row["score"])
        line["max"] += float(row["max_score"])
    sums = defaultdict(list)
    for (student, notebook, cell), (score, max_score) in sorted(report.load_cell_scores(coursedir, chapter).items()):
        sums[(notebook, cell)].append((score, max_score))
    averages = [
        (notebook, cell, sum(s for s, _ in values) / len(values), values[0][1], len(values))
        for (notebook, cell), values in sorted(sums.items())
    ]
    entries = [e for e in report.load_entries(coursedir, chapter)]
    return list(table.values()), averages, entries, report.integrity_problems(coursedir), rows


def format_summary(chapter, table, averages, entries, problems, rows=()):
    """Plain-text version of :func:`summarise`'s result, for the terminal."""
    notebooks = sorted({key for line in table for key in line
                        if key not in ("student_id", "total", "max") and not key.endswith(("_status", "_changed"))})
    width = max([len("student")] + [len(line["student_id"]) for line in table])
    widths = [max(len(nb), 10) for nb in notebooks]
    header = f"{'student':<{width}} | " + " | ".join(f"{nb:>{w}}" for nb, w in zip(notebooks, widths)) + " | total"
    out = [f"{chapter}: {len(table)} students", header, "-" * len(header)]
    for line in table:
        cells = [
            f"{line[nb] + SHORT.get(line[nb + '_status'], ' ?') + (CHANGED_MARK if line.get(nb + '_changed') else ''):>{w}}"
            for nb, w in zip(notebooks, widths)
        ]
        out.append(f"{line['student_id']:<{width}} | " + " | ".join(cells)
                   + f" | {number(line['total'])}/{number(line['max'])}")
    out.append(LEGEND)
    changed = sorted({row["student_id"] for row in rows if row["tests_changed"]})
    if changed:
        out.append(f"tests changed since grading for {len(changed)} student(s): "
                   f"python -m grader autograde {chapter} --course-dir … regrades them")
    out += ["", "notebooks (status, seconds, reason):"]
    nb_width = max([len("notebook")] + [len(row["notebook"]) for row in rows])
    for row in rows:
        seconds = f"{row['seconds']:>6}" if row["seconds"] else " " * 6
        reason = row["detail"] if row["status"] != "graded" else ""
        if row["tests_changed"]:
            reason = (reason + "; " if reason else "") + "tests changed since grading"
        out.append(f"  {row['student_id']:<{width}}  {row['notebook']:<{nb_width}}  "
                   f"{row['score'] + '/' + row['max_score']:>9}  {row['status']:<11} {seconds}  {reason}".rstrip())
    out += ["", "per-exercise averages (graded notebooks):"]
    for notebook, cell, average, max_score, count in averages:
        out.append(f"  {notebook}/{cell}: {average:.2f} / {max_score:g} (n={count})")
    shown = [e for e in entries if e["severity"] != "info"]
    out += ["", f"tamper and cheat report: {len(shown)} entries"
            + (f" (+{len(entries) - len(shown)} informational)" if len(entries) > len(shown) else "")]
    for e in shown:
        out.append(f"  {e['student_id']}/{e['notebook']} [{e['severity']}] {e['kind']}"
                   + (f" ({e['cell']})" if e["cell"] else "") + f": {e['detail']}")
    out += ["", "gradebook integrity: " + ("ok" if not problems else "; ".join(problems))]
    return "\n".join(out)

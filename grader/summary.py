"""The summary of a chapter: students x notebooks, per-exercise averages, the tamper and cheat report."""
from collections import defaultdict

from grader.course_folder import course_api
from grader.export import grade_rows

SHORT = {"graded": "", "tampered": " T!", "missing": " -", "malformed": " M!", "timed_out": " TO",
         "kernel_died": " KD", "not_graded": " ?"}
LEGEND = ("T! tampered (graded after restoring the tests)  - missing  M! malformed  TO timed out  "
          "KD kernel died  ? not graded")


def summarise(course_dir, chapter):
    """``(table_rows, exercise_averages, entries, problems)`` for ``chapter``.

    table_rows: one dict per student (``student_id``, then ``<notebook>`` score, ``<notebook>_status``
    per notebook, and ``total``/``max``); exercise_averages: ``[(notebook, cell, average, max, n)]``
    over the notebooks that were graded; entries: the report entries; problems: gradebook integrity.
    """
    from grader import report

    coursedir = course_api(course_dir).coursedir
    rows = list(grade_rows(course_dir, [chapter]))
    table = {}
    for row in rows:
        line = table.setdefault(row["student_id"], {"student_id": row["student_id"], "total": 0.0, "max": 0.0})
        line[row["notebook"]] = row["score"]
        line[f"{row['notebook']}_status"] = row["status"]
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
    return list(table.values()), averages, entries, report.integrity_problems(coursedir)


def format_summary(chapter, table, averages, entries, problems):
    """Plain-text version of :func:`summarise`'s result, for the terminal."""
    notebooks = sorted({key for line in table for key in line
                        if key not in ("student_id", "total", "max") and not key.endswith("_status")})
    width = max([len("student")] + [len(line["student_id"]) for line in table])
    header = f"{'student':<{width}} | " + " | ".join(f"{nb[:14]:>14}" for nb in notebooks) + " |  total"
    out = [f"{chapter}: {len(table)} students", header, "-" * len(header)]
    for line in table:
        cells = [f"{line[nb] + SHORT.get(line[nb + '_status'], ' ?'):>14}" for nb in notebooks]
        out.append(f"{line['student_id']:<{width}} | " + " | ".join(cells) + f" | {line['total']:g}/{line['max']:g}")
    out += [LEGEND, "", "per-exercise averages (graded notebooks):"]
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

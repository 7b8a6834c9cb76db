"""Run the benchmarks: ``python -m benchmarks.run [--only NAME]`` (what ``make bench`` calls).

Prints one line per figure, ``bench NAME: VALUE UNIT (target OP VALUE)``, then a summary line of
the targets missed. The exit status is 0 even when a target is missed: a benchmark reports, the
test suite decides.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import benchmarks

PREFIX = "bench_"


def available() -> list[str]:
    folder = Path(benchmarks.__file__).parent
    return sorted(m.name.removeprefix(PREFIX) for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith(PREFIX))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"run one benchmark module; known: {', '.join(available()) or 'none'}")
    args = parser.parse_args(argv)
    names = available()
    if args.only:
        if args.only not in names:
            parser.error(f"unknown benchmark {args.only!r}; known: {', '.join(names) or 'none'}")
        names = [args.only]
    missed = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{PREFIX}{name}")
        for figure in module.run():
            print(figure.line(), flush=True)
            if not figure.met:
                missed.append(figure.name)
    print(f"{len(missed)} target(s) missed" + (f": {', '.join(missed)}" if missed else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Do the book's claims hold on other seeds? Run chapters with their ``SEED = N`` line replaced.

    python -m benchmarks.chapter_seeds 03 04 --seeds 1 2 3 4 5          # print the tables
    python -m benchmarks.chapter_seeds --seeds 1 2 3 4 --own --record   # every chapter, also its own
                                                                        # seed; append to RESULTS.md
    python -m benchmarks.chapter_seeds --show before --record           # tables of stored rows only

Each run executes a copy of the notebook in a temporary folder laid out like the repository
(``chapters/`` next to ``benchmarks/``, as chapter 10 reads ``../benchmarks/gp_results.json``),
in a fresh kernel of the Python running this script (so the venv's packages and this
worktree's ``mathkit`` through ``PYTHONPATH``), one run at a time. Recorded per run: the wall
time of the whole notebook, every number the chapter glues into its prose, and its claim
checks (the ``remove-cell`` cells with ``assert``). A claim-check cell stops at its first
failing assert, so after the notebook has run each top-level statement of those cells is run
again on its own in the same kernel, and every failing statement is recorded. Any other cell
that raises is recorded as an error. Raw rows go to ``benchmarks/chapter_seeds.json`` (rows of
earlier runs with other labels are kept, so a "before" and an "after" can sit side by side).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from benchmarks.truncnorm import machine

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
RESULTS = Path(__file__).with_name("RESULTS.md")
ROWS = Path(__file__).with_name("chapter_seeds.json")
DEFAULT_CHAPTERS = ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12")
SEED_LINE = re.compile(r"^SEED = (\d+)$", re.MULTILINE)
MARKER = "CHAPTER_SEEDS_CLAIMS "

# Appended to the notebook: rerun every top-level statement of the claim-check cells on its own.
CHECKER = '''
import ast as _ast, json as _json
_failures = []
for _cell, _src in enumerate({sources!r}):
    for _stmt in _ast.parse(_src).body:
        _code = _ast.get_source_segment(_src, _stmt)
        try:
            exec(compile(_ast.Module([_stmt], []), "<claim>", "exec"), globals())
        except Exception as _e:
            _failures.append(dict(statement=_code.splitlines()[0][:160], error=type(_e).__name__,
                                  message=str(_e)[:300]))
print({marker!r} + _json.dumps(dict(statements=sum(len(_ast.parse(s).body) for s in {sources!r}),
                                    failures=_failures)))
'''


def chapter_path(name: str) -> Path:
    """``03``, ``03_prediction_intervals`` or the path of a notebook -> the notebook."""
    if name.endswith(".ipynb") and Path(name).is_file():
        return Path(name).resolve()
    matches = sorted(CHAPTERS.glob(f"{Path(name).stem}*.ipynb"))
    if len(matches) != 1:
        raise SystemExit(f"chapter {name!r} matches {len(matches)} notebooks in {CHAPTERS}")
    return matches[0]


def own_seed(nb) -> int:
    seeds = [int(m.group(1)) for c in nb.cells if c.cell_type == "code" for m in SEED_LINE.finditer(c.source)]
    if len(seeds) != 1:
        raise ValueError(f"expected exactly one 'SEED = N' line, found {len(seeds)}")
    return seeds[0]


def with_seed(nb, seed: int):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a deep copy
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = SEED_LINE.sub(f"SEED = {seed}", cell.source)
    return nb


def is_claim_check(cell) -> bool:
    return (cell.cell_type == "code" and "remove-cell" in cell.metadata.get("tags", [])
            and re.search(r"^\s*assert\b", cell.source, re.MULTILINE) is not None)


def glued_numbers(nb) -> dict:
    """name -> value of every scalar the notebook glues (figures and tables are skipped)."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            # glue(..., display=False) stores its mime types under a prefix
            data = {"/".join(key.split("/")[-2:]): v for key, v in out.get("data", {}).items()}
            text = data.get("text/plain")
            if name and text is not None and "image/png" not in data:
                try:
                    values[name] = float(text)
                except ValueError:
                    values[name] = text.strip("'\"")
    return values


def run_one(path: Path, seed: int, timeout: int, keep: Path | None = None) -> dict:
    nb = with_seed(nbformat.read(path, as_version=4), seed)
    claims = [c.source for c in nb.cells if is_claim_check(c)]
    nb.cells.append(nbformat.v4.new_code_cell(CHECKER.format(sources=claims, marker=MARKER)))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "chapters").mkdir()
        os.symlink(ROOT / "benchmarks", Path(tmp) / "benchmarks")
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(Path(tmp) / "chapters")}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / f"{path.stem}_seed{seed}.ipynb")
    errors, report = [], None
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and MARKER in out.get("text", ""):
                report = json.loads(out["text"].split(MARKER, 1)[1].splitlines()[0])
            elif out.get("output_type") == "error" and not is_claim_check(cell) and index < len(nb.cells) - 1:
                errors.append(f"cell {index}: {out['ename']}: {out['evalue'][:200]}")
    failures = report["failures"] if report else [dict(statement="(claim checks did not run)", error="", message="")]
    return dict(chapter=path.stem, seed=seed, seconds=round(seconds, 1), statements=report and report["statements"],
                failures=failures, errors=errors, passed=not failures and not errors, glued=glued_numbers(nb))


def status(row: dict) -> str:
    if row["passed"]:
        return "pass"
    if row["errors"]:
        return f"error ({len(row['errors'])} cells)"
    return f"FAIL {len(row['failures'])}/{row['statements']}"


def tables(rows: list[dict], label: str) -> str:
    chapters = sorted({r["chapter"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["chapter"], r["seed"]): r for r in rows}
    head = "| chapter | " + " | ".join(f"seed {s}" for s in seeds) + " |\n|---|" + "---|" * len(seeds)
    passes, times = [head], [head]
    for ch in chapters:
        own = own_seed(nbformat.read(chapter_path(ch), as_version=4))
        mark = lambda s: "*" if s == own else ""  # noqa: E731
        passes.append(f"| {ch} | " + " | ".join(status(by[ch, s]) + mark(s) if (ch, s) in by else ""
                                                 for s in seeds) + " |")
        times.append(f"| {ch} | " + " | ".join(f"{by[ch, s]['seconds']:.0f}" + mark(s) if (ch, s) in by else ""
                                                for s in seeds) + " |")
    lines = [f"Claim checks ({label}; `FAIL k/n`: k of the n top-level statements of the claim-check cells "
             "failed; * the chapter's own seed):", "", *passes, "", "Wall time per run (s):", "", *times, ""]
    failed = [r for r in rows if not r["passed"]]
    if failed:
        lines += ["Failures:", ""]
        for r in failed:
            for f in r["failures"]:
                message = " ".join(f"{f['error']} {f['message']}".split())[:160]
                lines.append(f"- {r['chapter']}, seed {r['seed']}: `{f['statement']}` ({message})")
            lines += [f"- {r['chapter']}, seed {r['seed']}: {e}" for e in r["errors"]]
        lines.append("")
    for ch in chapters:
        names = sorted({k for r in rows if r["chapter"] == ch for k, v in r["glued"].items() if isinstance(v, float)})
        ch_seeds = [s for s in seeds if (ch, s) in by]
        lines += [f"<details><summary>{ch}: glued numbers per seed</summary>", "",
                  "| glued | " + " | ".join(str(s) for s in ch_seeds) + " |", "|---|" + "---|" * len(ch_seeds)]
        for name in names:
            cells = (by[ch, s]["glued"].get(name) for s in ch_seeds)
            lines.append(f"| {name} | " + " | ".join("" if v is None else f"{v:.4g}" for v in cells) + " |")
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def save(row: dict) -> None:
    """Add ``row`` to the stored rows, replacing an earlier one of the same label, chapter and seed."""
    key = lambda r: (r["label"], r["chapter"], r["seed"])  # noqa: E731
    previous = json.loads(ROWS.read_text()) if ROWS.exists() else []
    ROWS.write_text(json.dumps([r for r in previous if key(r) != key(row)] + [row], indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", default=DEFAULT_CHAPTERS, help="e.g. 03 04 (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[])
    parser.add_argument("--own", action="store_true", help="also run each chapter's own seed")
    parser.add_argument("--label", default="current code", help="names this run's rows in the JSON and tables")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--record", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    parser.add_argument("--keep", type=Path, help="save the executed notebooks in this folder")
    parser.add_argument("--show", metavar="LABEL", help="run nothing: tables of the stored rows with this label")
    args = parser.parse_args()
    if args.show:
        rows = [r for r in json.loads(ROWS.read_text()) if r["label"] == args.show]
        dates = sorted(r["date"] for r in rows)
        loads = [r["load"] for r in rows if r.get("load") is not None]
        text = (f"### Chapter claims across seeds (`python -m benchmarks.chapter_seeds`): {args.show}\n\n"
                f"Runs started from {dates[0]} to {dates[-1]} UTC; {machine()}; load average "
                + (f"{min(loads):.1f}-{max(loads):.1f} at the starts of the runs" if loads else "not recorded per run")
                + " (the machine is shared with other jobs, so the times vary).\n\n" + tables(rows, args.show))
        print(text)
        if args.record:
            with RESULTS.open("a") as f:
                f.write("\n" + text)
        return
    if not args.seeds:
        parser.error("--seeds is required unless --show is given")
    load = os.getloadavg()[0]
    started = dt.datetime.now(dt.timezone.utc)
    rows = []
    for name in args.chapters:
        path = chapter_path(name)
        seeds = list(dict.fromkeys(([own_seed(nbformat.read(path, as_version=4))] if args.own else []) + args.seeds))
        for seed in seeds:
            load_before, date = os.getloadavg()[0], f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}"
            row = run_one(path, seed, args.timeout, args.keep)
            row.update(label=args.label, date=date, load=round(load_before, 1))
            rows.append(row)
            save(row)
            print(f"{row['chapter']} seed {seed}: {status(row)} in {row['seconds']:.0f} s "
                  + "; ".join(f["statement"] for f in row["failures"]) + "; ".join(row["errors"]), flush=True)
    text = (f"### Chapter claims across seeds (`python -m benchmarks.chapter_seeds`): {args.label}\n\n"
            f"{started:%Y-%m-%d %H:%M} UTC; {machine()}; one chapter at a time, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average {load:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} at the end (the machine is shared with other jobs).\n\n"
            + tables(rows, args.label))
    print("\n" + text)
    if args.record:
        with RESULTS.open("a") as f:
            f.write("\n" + text)
    sys.exit(0 if all(r["passed"] for r in rows) else 1)


if __name__ == "__main__":
    main()

"""Read a chapter in JupyterLab as a reader would, in headless Chromium, and check what shows.

Starts ``jupyter lab`` on a free localhost port with a random token, on a scratch copy of the
chapter (so the run never writes outputs into the repository), opens the notebook, clicks
Run > Run All Cells, waits for the kernel, saves, and checks:

- no cell errored (the saved notebook has no error output, every code cell ran);
- every figure is shown in place (an image output in the cell that makes it);
- every inline number of the text was evaluated (``user_expressions`` in the markdown cells'
  metadata, all ``ok``), and the rendered text has no raw MyST markup left
  (``{glue``, ``{eval``, ``{eq}``, ``{cite``, ``:::``, a ```` ```{ ```` fence).

Usage::

    python .ci/check_lab.py chapters/11_log_likelihood.ipynb [--screenshot lab.png]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = "/usr/bin/chromium"
RAW_MARKUP = ("{glue", "{eval", "{eq}", "{cite", ":::", "```{", "{numref}", "{math}")
RUN_TIMEOUT_S = int(os.environ.get("CHECK_LAB_TIMEOUT", "150"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, port: int, token: str, settings: Path, log) -> subprocess.Popen:
    # Cells are kept in the page (no windowing), so the whole chapter can be read from the DOM.
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTER_CONFIG_DIR=str(settings / "cfg"))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.open_browser=False", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
           "jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return process
        except OSError:
            if process.poll() is not None:
                log.flush()
                raise RuntimeError("jupyter lab exited at start:\n" + Path(log.name).read_text()[-3000:])
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError("jupyter lab did not answer within 90 s")


def run_all(page: Page) -> None:
    page.click(".lm-MenuBar-item >> text='Run'", timeout=30_000)  # the menu bar's Run menu
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click(timeout=30_000)


def wait_until_done(page: Page) -> None:
    """Every code cell has a number in its prompt and the kernel is idle."""
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline:
        prompts = page.eval_on_selector_all(
            ".jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent.trim())")
        busy = page.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']").count()
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts) and not busy:
            return
        time.sleep(1)
    raise AssertionError(f"cells still running or not run after {RUN_TIMEOUT_S} s: {prompts}")


def check_saved(path: Path) -> list[str]:
    """Problems found in the notebook JupyterLab saved after the run."""
    nb = json.loads(path.read_text())
    problems = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            if cell.get("execution_count") is None:
                problems.append(f"cell {index} did not run")
            for out in cell.get("outputs", []):
                if out["output_type"] == "error":
                    problems.append(f"cell {index} raised {out['ename']}: {out['evalue']}")
            figure = cell["metadata"].get("mystnb", {}).get("figure")
            images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            if figure and not images:
                problems.append(f"cell {index}: figure {figure.get('name')} has no image output")
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "{eval}" in source:
            results = cell["metadata"].get("user_expressions", [])
            wanted = len(re.findall(r"\{eval\}`", source))
            failed = [r["expression"] for r in results if r["result"].get("status") != "ok"]
            if len(results) != wanted or failed:
                problems.append(f"cell {index}: {len(results)} of {wanted} inline numbers evaluated"
                                + (f", failed: {failed}" if failed else ""))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--screenshot", type=Path, default=Path("_build/lab.png"))
    args = parser.parse_args()
    nb_source = json.loads(args.notebook.read_text())
    n_figures = sum(1 for c in nb_source["cells"] if c["metadata"].get("mystnb", {}).get("figure"))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "book"
        (root / "chapters").mkdir(parents=True)
        copy = root / "chapters" / args.notebook.name
        shutil.copy(args.notebook, copy)
        port, token = free_port(), secrets.token_hex(16)
        log = open(Path(tmp) / "lab.log", "w")
        lab = start_lab(root, port, token, Path(tmp) / "settings", log)
        problems = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/lab/tree/chapters/{copy.name}?token={token}")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
                # JupyterLab may ask which kernel to start: take its default (Python 3), as a
                # reader would
                select = page.locator(".jp-Dialog button.jp-mod-accept")
                try:
                    select.wait_for(timeout=20_000)
                    select.click()
                except PlaywrightTimeout:
                    pass
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                       timeout=90_000)
                started = time.time()
                try:
                    run_all(page)
                    wait_until_done(page)
                except Exception:
                    page.screenshot(path=str(args.screenshot))
                    raise
                ran_s = time.time() - started
                page.keyboard.press("Control+s")
                time.sleep(3)
                # jupyterlab-myst renders a markdown cell into div.myst (the source stays in a
                # hidden editor)
                rendered = page.locator(".jp-MarkdownCell div.myst").all_inner_texts()
                n_markdown = sum(1 for c in nb_source["cells"] if c["cell_type"] == "markdown")
                if len(rendered) != n_markdown:
                    problems.append(f"{len(rendered)} of {n_markdown} markdown cells rendered by MyST")
                text = "\n".join(rendered)
                problems += [f"raw markup visible: ...{text[max(0, i - 60):i + 60]!r}..."
                             for m in RAW_MARKUP for i in [text.find(m)] if i >= 0]
                math_errors = page.locator(".jp-MarkdownCell div.myst :is(.katex-error, mjx-merror, "
                                           "[data-mjx-error])").all_inner_texts()
                if math_errors:
                    problems.append(f"math that does not render: {math_errors[:5]}")
                shown = page.locator(".jp-OutputArea-output img").count()
                if shown < n_figures:
                    problems.append(f"{shown} images shown, the chapter has {n_figures} figures")
                errors = page.locator(".jp-OutputArea-output[data-mime-type="
                                      "'application/vnd.jupyter.error']").count()
                if errors:
                    problems.append(f"{errors} error outputs shown")
                # the view a reader gets: the first paragraph with inline numbers, then its figure
                news = page.get_by_role("button", name="No", exact=True)
                if news.count():
                    news.first.click()
                first = next(i for i, c in enumerate(nb_source["cells"])
                             if c["cell_type"] == "markdown" and "{eval}" in "".join(c["source"]))
                page.locator(".jp-Notebook .jp-Cell").nth(first).evaluate("e => e.scrollIntoView()")
                time.sleep(1)
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshot))
                browser.close()
            problems += check_saved(copy)
        finally:
            lab.terminate()
            lab.wait(timeout=30)
            log.close()
    print(f"{args.notebook}: ran all cells in JupyterLab in {ran_s:.0f} s; {shown} figures shown; "
          f"screenshot {args.screenshot}")
    for problem in problems:
        print(f"  FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""tools/glue_to_inline.py: the rewritten chapter says the same numbers as glue would have.

The oracle for a number is Python's own ``format(value, spec)`` of the value the test put in,
never the converter's output; the converted code is executed, and every ``{eval}`` expression
is evaluated in the resulting namespace, in cell order, as jupyterlab-myst and myst-nb do.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import glue_to_inline as g2i  # noqa: E402

EVAL = re.compile(r"\{eval\}`([^`]+)`")
EVAL_PATTERN = re.compile(yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
                          ["nb_eval_name_regex"])

SETUP = "import math\nfrom myst_nb import glue\n\nSEED = 3"
NUMBERS = '''x = 2 * math.pi
glue("tau", x, display=False)
label = "ε"; glue("eps_name", label, display=False)
x = -1.0  # reused afterwards: the text must still show 2 pi
for key, v in [("band", 0.812), ("head", 0.795)]:
    glue(f"{key}_cov80", float(100 * v), display=False)
glue(
    "big",
    1234567.0,
    display=False,
)
%time y = 1
if True:
    glue("nested_block", 7, display=False)
glue("headline_gap", 0.25, display=False)
glue("for_takeaways", 12.5, display=False)'''
FIGURE_CODE = '''import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
glue("fig-demo", fig, display=False)
plt.close(fig)'''
TEXT = ("Tau is {glue:text}`tau:.3f`, name {glue:text}`eps_name`, coverage {glue:text}`band_cov80:.0f`"
        " and {glue:text}`head_cov80:.1f`; big {glue:text}`big:,.0f`, block {glue}`nested_block`, "
        "gap {glue:text}`headline_gap:.0%` and {glue:text}`for_takeaways:.1f`; "
        "see {numref}`fig-demo` and {eq}`eq-x`.")
FIGURE_BLOCK = ("Before the figure.\n\n:::{glue:figure} fig-demo\n:name: fig-demo\n:alt: An empty plot.\n"
                "\nA caption with $x^2$ and {eq}`eq-x`.\n:::\n\nAfter the figure.")
EXPECTED = {"tau": (2 * 3.141592653589793, ".3f"), "eps_name": ("ε", ""),
            "band_cov80": (81.2, ".0f"), "head_cov80": (79.5, ".1f"), "big": (1234567.0, ",.0f"),
            "nested_block": (7, ""), "headline_gap": (0.25, ".0%"), "for_takeaways": (12.5, ".1f")}


def chapter(*, forward: bool = False) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_markdown_cell("# Title"),
             nbformat.v4.new_code_cell(SETUP, metadata={"tags": ["remove-cell"]})]
    if forward:
        cells.append(nbformat.v4.new_markdown_cell("Early: {glue:text}`tau:.1f`."))
    cells += [nbformat.v4.new_code_cell(NUMBERS, metadata={"tags": ["remove-cell"]}),
              nbformat.v4.new_markdown_cell(TEXT),
              nbformat.v4.new_code_cell(FIGURE_CODE, metadata={"tags": ["hide-input"]}),
              nbformat.v4.new_markdown_cell(FIGURE_BLOCK)]
    nb.cells = cells
    return nb


def run(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Execute code cells in order (magics skipped) and evaluate each {eval} where it stands."""
    glued: dict = {}
    namespace: dict = {"display": lambda obj: namespace.setdefault("_shown", []).append(obj),
                       "glue": lambda key, value, display=True: glued.__setitem__(key, value)}
    shown: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            source = cell.source.replace("from myst_nb import glue", "pass")
            exec(re.sub(r"^%.*$", "pass", source, flags=re.M), namespace)
        else:
            for expression in EVAL.findall(cell.source):
                key = re.search(r"prose\.(\w+)", expression).group(1)
                shown[key] = eval(expression, namespace)
    return shown | {"__glued__": glued, "__shown__": namespace.get("_shown", [])}


def test_numbers_read_as_glue_formatted_them_and_figure_moves_into_its_cell():
    nb = chapter()
    report = g2i.convert(nb, keep={"for_takeaways"})
    result = run(nb)
    for key, (value, spec) in EXPECTED.items():
        assert result[key] == format(value, spec), key
    assert all(EVAL_PATTERN.match(e) for c in nb.cells if c.cell_type == "markdown"
               for e in EVAL.findall(c.source))
    # other pages and the seed tables still find their keys under glue; nothing else is glued
    assert set(result["__glued__"]) == {"for_takeaways", "headline_gap"}
    assert result["__glued__"]["for_takeaways"] == 12.5
    assert report.kept == ["for_takeaways", "headline_gap"] and report.forward == []
    fig_cell = next(c for c in nb.cells if "plt.subplots" in c.source)
    assert "display(fig)" in fig_cell.source and "glue" not in fig_cell.source
    assert len(result["__shown__"]) == 1
    assert fig_cell.metadata["mystnb"] == {
        "figure": {"name": "fig-demo", "caption": "A caption with $x^2$ and {eq}`eq-x`."},
        "image": {"alt": "An empty plot."}}
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "{glue" not in text and "Before the figure.\n\nAfter the figure." in text
    assert "{numref}`fig-demo`" in text and "{eq}`eq-x`" in text
    # setup: namespace defined, glue import kept (still used); the cells that set numbers are
    # hidden but run in order on the website
    setup = nb.cells[1]
    assert "prose = SimpleNamespace()" in setup.source and "from myst_nb import glue" in setup.source
    assert setup.metadata["tags"] == ["remove-input", "remove-output"]
    assert nb.metadata["mystnb"] == {"execution_mode": "inline"}


def test_running_twice_changes_nothing():
    macros = g2i.book_macros(ROOT / "chapters" / "any.ipynb")
    nb = chapter(forward=True)
    g2i.convert(nb, keep=set(), macros=macros)
    once = copy.deepcopy(nb)
    g2i.convert(nb, keep=set(), macros=macros)
    assert nb == once


def test_front_matter_declares_the_books_macros_for_jupyterlab():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    tex = config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    nb = chapter()
    g2i.convert(nb, keep=set(), macros=g2i.book_macros(ROOT / "chapters" / "any.ipynb"))
    first = nb.cells[0]
    assert first.metadata["tags"] == ["remove-cell"] and nb.cells[1].source == "# Title"
    front = yaml.safe_load(first.source.strip("-\n"))["math"]
    assert front["\\N"] == tex["N"] == "\\mathcal{N}"
    assert front["\\bm"] == tex["bm"][0]
    assert len(front) == len(tex)


def test_forward_reference_stays_glue_and_glue_call_is_kept():
    nb = chapter(forward=True)
    report = g2i.convert(nb, keep=set())
    assert report.forward == ["tau"]
    assert nb.cells[2].source == "Early: {glue:text}`notebook.ipynb::tau:.1f`."
    result = run(nb)
    assert result["__glued__"]["tau"] == pytest.approx(2 * 3.141592653589793)
    assert result["tau"] == format(2 * 3.141592653589793, ".3f")


def test_glue_disappears_when_nothing_needs_it():
    nb = chapter()
    nb.cells[2].source = nb.cells[2].source.replace('glue("headline_gap", 0.25, display=False)',
                                                    'glue("gap", 0.25, display=False)')
    nb.cells[3].source = nb.cells[3].source.replace("headline_gap", "gap")
    g2i.convert(nb, keep=set())
    assert all("glue" not in c.source for c in nb.cells)
    assert run(nb)["gap"] == "25%"


@pytest.mark.parametrize("code, text, message", [
    ("print(glue('a', 1, display=False))", "{glue:text}`a`", "inside an expression"),
    ("glue('a', 1, display=False)", "{glue:md}`a`", "no inline form"),
    ("glue('a', 1, display=False)", "{glue:text}`b`", "glued nowhere"),
    ("glue('a', 1, display=False)\nglue('b', 2, display=False)",
     "```{glue:figure} a\n:name: a\n```\n```{glue:figure} b\n:name: b\n```", "split the cell"),
    ("glue('a', 1, display=False)\nplt.close(1)", "```{glue:figure} a\n:figsize: 3\n```", ":figsize:"),
    ("glue('a', 1, display=False)", "```{glue:figure} a\n:name: a\n```", "plt.close"),
    ("glue('a', 1)\nglue('b', 2, True)", "{glue:text}`a`", "glue(key, value, display=False)"),
])
def test_what_cannot_be_rewritten_faithfully_is_refused(code, text, message):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from myst_nb import glue"),
                nbformat.v4.new_code_cell(code), nbformat.v4.new_markdown_cell(text)]
    with pytest.raises(g2i.ConversionError, match=re.escape(message)):
        g2i.convert(nb, keep=set())


def test_other_pages_keys(tmp_path):
    page = tmp_path / "takeaways.md"
    page.write_text("{glue:text}`06_x.ipynb::a:.1f` {glue:text}`07_y.ipynb::b` {glue:figure} 06_x.ipynb::f\n")
    keys = g2i.external_keys(tmp_path / "06_x.ipynb", [page])
    assert keys == {"a", "f"}


@pytest.mark.parametrize("notebook", sorted((ROOT / "chapters").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_chapter_converts_and_every_number_is_computed_before_it_is_read(notebook, tmp_path):
    """No execution: the converted chapter is checked statically (the lead executes it)."""
    pages = sorted((ROOT / "chapters").glob("*.md")) + sorted((ROOT / "chapters").glob("*.ipynb"))
    copy_path = tmp_path / notebook.name
    copy_path.write_text(notebook.read_text())
    g2i.convert_file(copy_path, pages)
    changed, _ = g2i.convert_file(copy_path, pages)
    assert not changed
    nb = nbformat.read(copy_path, as_version=4)
    assigned: set[str] = set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assigned |= set(re.findall(r"\bprose\.(\w+) =", cell.source))
            if "setattr(prose" in cell.source:
                assigned.add("*")
            if re.search(r"\bprose\b", cell.source):
                assert "remove-cell" not in cell.metadata.get("tags", [])
        else:
            for expression in EVAL.findall(cell.source):
                assert EVAL_PATTERN.match(expression), expression
                key = re.search(r"prose\.(\w+)", expression).group(1)
                assert key in assigned or "*" in assigned, f"cell {index}: {key} read before it is set"
    for key in g2i.external_keys(notebook, pages):
        assert any(re.search(rf"glue\(\"{key}\"|glue\(f?\"", c.source) for c in nb.cells
                   if c.cell_type == "code"), key

"""Rewrite a chapter's glued numbers and figures into forms JupyterLab shows as well as the website.

    python tools/glue_to_inline.py chapters/06_know_your_function.ipynb [more notebooks ...]
    python tools/glue_to_inline.py --check chapters/*.ipynb     # exit 1 if any would change

What changes, in place (run it again and nothing changes):

- ``glue("key", expr, display=False)`` in a code cell becomes ``prose.key = expr``, and a
  ``prose = SimpleNamespace()`` line is added to the cell that imported glue. A glue call with a
  computed key, ``glue(f"{k}_x", expr, display=False)``, becomes ``setattr(prose, f"{k}_x", expr)``.
- ``{glue:text}`key:.2f``` and ``{glue}`key``` in markdown become
  ``{eval}`f"{prose.key:.2f}"```: myst-nb evaluates it when it builds the page
  (``execute_notebooks: inline``), jupyterlab-myst when the reader runs the markdown cell. The
  value is captured where glue captured it, so later reuse of a variable name changes nothing.
- A glued figure, ``glue("fig-x", fig, display=False)`` shown by a ``{glue:figure}`` block,
  becomes ``display(fig)`` in its code cell, whose metadata carries the block's caption, name and
  alt text (``mystnb.figure`` / ``mystnb.image``): the figure appears in place in JupyterLab and
  stays a numbered, referenceable figure on the website. The ``{glue:figure}`` block is removed.

What stays glue (and is reported):

- keys that another page reads (``{glue:text}`this_chapter.ipynb::key```, as in
  ``chapters/takeaways.md``) and keys starting with ``headline_`` (read by
  ``benchmarks.chapter_seeds``): the call stays as ``glue("key", prose.key, display=False)``
  right after the assignment, so both the other page and this one see the same value;
- a number quoted in a markdown cell *before* the code cell that computes it (a forward
  reference): an inline expression cannot be evaluated before its value exists, so the role
  becomes a reference to this page's own glue, ``{glue:text}`this_chapter.ipynb::key:.2f```,
  which myst-nb resolves once the page has run; JupyterLab shows it as markup, and a warning
  names it: move the text or the computation to fix it.

The notebook's first cell becomes MyST front matter declaring the book's TeX macros (from
``_config.yml``) for jupyterlab-myst, tagged ``remove-cell`` (the website has them already).
A converted notebook gets ``"mystnb": {"execution_mode": "inline"}`` in its metadata, so myst-nb
runs it while reading the page (the book's other notebooks keep ``_config.yml``'s mode).

Anything the script cannot rewrite faithfully (a glue call inside an expression, an unknown
``{glue:figure}`` option, two glued figures in one cell) stops it with an error naming the cell;
the notebook is left untouched.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

NAMESPACE = "prose"
SETUP_LINE = f"{NAMESPACE} = SimpleNamespace()  # numbers quoted in the text, as {{eval}}`f\"{{{NAMESPACE}.name:.2f}}\"`"
KEEP_PREFIXES = ("headline_",)

# {glue}`key`, {glue:text}`key:fmt`, {glue:any}`key`; a cross-page key is `file.ipynb::key`.
ROLE = re.compile(r"\{glue(?::(?P<kind>\w+))?\}`(?P<body>[^`]+)`")
# A {glue:figure} block in backtick or colon fences: options, a blank line, the caption.
FIGURE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{glue:figure\}[ \t]+(?P<key>\S+)[ \t]*\n"
    r"(?P<options>(?:[ \t]*:[\w-]+:.*\n)*)"
    r"(?P<caption>(?:.*\n)*?)"
    r"(?P=fence)[ \t]*(?:\n|$)",
    re.MULTILINE,
)
OPTION = re.compile(r"^[ \t]*:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")
FIGURE_OPTIONS = {"name": "figure", "align": "figure", "figwidth": "figure", "figclass": "figure",
                  "alt": "image", "width": "image", "height": "image", "scale": "image", "class": "image"}
MAGIC = re.compile(r"^([ \t]*)([%!].*)$", re.MULTILINE)
IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")
EVAL_ROLE = "{eval}`"


class ConversionError(ValueError):
    """The notebook holds a glue form this script cannot rewrite faithfully."""


@dataclass
class Report:
    """What one conversion did: kept glue keys and forward references left as glue."""

    kept: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    numbers: int = 0


def external_keys(notebook: Path, pages: list[Path]) -> set[str]:
    """Glue keys of ``notebook`` that any other page reads as ``{glue...}`notebook.ipynb::key```."""
    keys = set()
    for page in pages:
        if page.resolve() == notebook.resolve():
            continue
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"\{glue(?::\w+)?\}`([^`]+)`|\{glue(?::\w+)?\}[ \t]+(\S+)", text):
            ref = match.group(1) or match.group(2)
            if "::" in ref:
                doc, ref = ref.split("::", 1)
                if Path(doc).stem == notebook.stem:
                    keys.add(ref.split(":", 1)[0])
    return keys


def _parse(source: str) -> ast.Module:
    """Parse a code cell, with IPython magics masked by comments of the same length."""
    return ast.parse(MAGIC.sub(lambda m: m.group(1) + "#" + m.group(2)[1:], source))


def _glue_calls(source: str, where: str) -> list[ast.Call]:
    """The ``glue(...)`` calls of a code cell; each must be a statement of its own."""
    tree = _parse(source)
    statements = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and _is_glue(node.value):
            statements.append(node.value)
    nested = [n for n in ast.walk(tree) if _is_glue(n) and n not in statements]
    if nested:
        raise ConversionError(f"{where}: glue(...) inside an expression (line {nested[0].lineno}); "
                              "write it as a statement of its own")
    for call in statements:
        if len(call.args) != 2 or any(k.arg != "display" for k in call.keywords):
            raise ConversionError(f"{where}: glue call on line {call.lineno} is not "
                                  "glue(key, value, display=False)")
    return sorted(statements, key=lambda c: (c.lineno, c.col_offset))


def _is_glue(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "glue"


def _literal_key(call: ast.Call) -> str | None:
    key = call.args[0]
    return key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None


def _already_converted(call: ast.Call) -> bool:
    """``glue("k", prose.k, ...)`` or ``glue(k, getattr(prose, k), ...)``: kept on purpose earlier."""
    value, key = call.args[1], call.args[0]
    if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name):
        return value.value.id == NAMESPACE and value.attr == _literal_key(call)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "getattr":
        target = value.args[0] if value.args else None
        return (isinstance(target, ast.Name) and target.id == NAMESPACE and len(value.args) == 2
                and ast.dump(value.args[1]) == ast.dump(key))
    return False


def _key_pattern(call: ast.Call, source: str) -> re.Pattern:
    """The keys a glue call can produce: itself if literal, an f-string's fixed parts otherwise."""
    literal = _literal_key(call)
    if literal is not None:
        return re.compile(re.escape(literal) + r"\Z")
    key = call.args[0]
    if isinstance(key, ast.JoinedStr):
        parts = [re.escape(v.value) if isinstance(v, ast.Constant) else r".+" for v in key.values]
        return re.compile("".join(parts) + r"\Z")
    return re.compile(r".+\Z")


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node)


def _replace_calls(source: str, replacements: list[tuple[ast.Call, str]]) -> str:
    """Replace each call statement by its text; the text's extra lines keep the indentation.

    ast's column offsets count UTF-8 bytes, so the edit is made on the encoded source.
    """
    data = source.encode("utf-8")
    starts, total = [], 0
    for line in data.splitlines(keepends=True):
        starts.append(total)
        total += len(line)
    for call, text in sorted(replacements, key=lambda r: (r[0].lineno, r[0].col_offset), reverse=True):
        begin = starts[call.lineno - 1] + call.col_offset
        end = starts[call.end_lineno - 1] + call.end_col_offset
        indent = b" " * call.col_offset
        data = data[:begin] + text.encode("utf-8").replace(b"\n", b"\n" + indent) + data[end:]
    return data.decode("utf-8")


def _eval_role(key: str, spec: str) -> str:
    fmt = f":{spec}" if spec else ""
    return f'{{eval}}`f"{{{NAMESPACE}.{key}{fmt}}}"`'


def _parse_figure(match: re.Match, where: str) -> dict:
    figure, image = {}, {}
    for line in match.group("options").splitlines():
        option = OPTION.match(line)
        name, value = option.group("name"), option.group("value").strip()
        if name not in FIGURE_OPTIONS:
            raise ConversionError(f"{where}: {{glue:figure}} option :{name}: has no myst-nb cell "
                                  "metadata equivalent")
        key = {"figclass": "classes", "class": "classes"}.get(name, name)
        (figure if FIGURE_OPTIONS[name] == "figure" else image)[key] = value
    caption = match.group("caption").strip()
    if caption:
        figure["caption"] = caption
    meta = {"figure": figure}
    if image:
        meta["image"] = image
    return meta


def book_macros(notebook: Path) -> dict[str, str] | None:
    """The TeX macros of the book's ``_config.yml`` (the nearest one above ``notebook``)."""
    for folder in notebook.resolve().parents:
        config = folder / "_config.yml"
        if config.is_file():
            tex = yaml.safe_load(config.read_text())["sphinx"]["config"]["mathjax3_config"]["tex"]
            return {"\\" + name: value if isinstance(value, str) else value[0]
                    for name, value in tex["macros"].items()}
    return None


def _set_macros(nb: nbformat.NotebookNode, macros: dict[str, str]) -> None:
    """First cell: MyST front matter with the book's macros, for jupyterlab-myst (KaTeX).

    The website takes the macros from _config.yml (MathJax) and never sees this cell
    (``remove-cell``); without it JupyterLab shows ``\\E`` in red and ``\\N`` as KaTeX's
    blackboard N.
    """
    source = "---\n" + yaml.safe_dump({"math": dict(sorted(macros.items()))}, sort_keys=True,
                                      allow_unicode=True, width=1000) + "---"
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and first.source.startswith("---\nmath:"):
        first.source = source
        first.metadata["tags"] = ["remove-cell"]
    else:
        cell = nbformat.v4.new_markdown_cell(source, metadata={"tags": ["remove-cell"]})
        if any("id" in c for c in nb.cells):
            cell["id"] = "tex-macros"  # fixed, so the conversion is deterministic
        else:
            cell.pop("id", None)
        nb.cells.insert(0, cell)


def convert(nb: nbformat.NotebookNode, keep: set[str], where: str = "notebook",
            stem: str = "notebook", macros: dict[str, str] | None = None) -> Report:
    """Convert ``nb`` (the file ``stem``.ipynb) in place; ``keep``: glue keys other pages read;
    ``macros``: TeX macros to declare for JupyterLab in a front-matter cell."""
    report = Report()
    cells = nb.cells

    # 1. Which keys are glued where, and which are figures.
    calls: dict[int, list[ast.Call]] = {}
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and "glue" in cell.source:
            found = _glue_calls(cell.source, f"{where} cell {index}")
            if found:
                calls[index] = found
    figure_blocks: dict[str, tuple[int, re.Match]] = {}
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            for match in FIGURE.finditer(cell.source):
                figure_blocks[match.group("key")] = (index, match)

    def defined_before(key: str, index: int) -> bool:
        return any(c < index and _key_pattern(call, cells[c].source).match(key)
                   for c, found in calls.items() for call in found)

    def defined_anywhere(key: str) -> bool:
        return defined_before(key, len(cells))

    # 2. Markdown: roles to {eval}, forward references stay glue; figure blocks are collected.
    forward: set[str] = set()
    for index, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue

        def role(match: re.Match, index: int = index) -> str:
            kind, body = match.group("kind"), match.group("body")
            if "::" in body:
                return match.group(0)  # another page's number: stays glue
            if kind not in (None, "text", "any"):
                raise ConversionError(f"{where} cell {index}: {{glue:{kind}}} has no inline form")
            key, _, spec = body.partition(":")
            if not IDENTIFIER.match(key):
                raise ConversionError(f"{where} cell {index}: glue key {key!r} is not a Python "
                                      "identifier, so it cannot be an attribute of the namespace")
            if not defined_anywhere(key):
                raise ConversionError(f"{where} cell {index}: {{glue}} key {key!r} is glued nowhere")
            if not defined_before(key, index):
                # inline execution has not computed it yet: a reference to this page's glue,
                # resolved when the whole page has run (JupyterLab cannot show it)
                forward.add(key)
                return f"{{glue:{kind or 'text'}}}`{stem}.ipynb::{body}`"
            report.numbers += 1
            return _eval_role(key, spec)

        cell.source = ROLE.sub(role, cell.source)
    report.forward = sorted(forward)

    # 3. Code: glue calls to assignments (kept keys keep their glue call), figures to display().
    for index, found in calls.items():
        cell = cells[index]
        replacements, figures = [], []
        for call in found:
            if _already_converted(call):
                continue
            key, key_src = _literal_key(call), _segment(cell.source, call.args[0])
            value = _segment(cell.source, call.args[1])
            if key is not None and key in figure_blocks:
                figures.append(key)
                text = f"display({value})"
                if key in keep:
                    text += f"\nglue({key_src}, {value}, display=False)"
                    report.kept.append(key)
                replacements.append((call, text))
                continue
            if key is not None:
                if not IDENTIFIER.match(key):
                    raise ConversionError(f"{where} cell {index}: glue key {key!r} is not a Python "
                                          "identifier")
                text = f"{NAMESPACE}.{key} = {value}"
                if key in keep or key in forward or key.startswith(KEEP_PREFIXES):
                    text += f"\nglue({key_src}, {NAMESPACE}.{key}, display=False)"
                    report.kept.append(key)
            else:
                text = f"setattr({NAMESPACE}, {key_src}, {value})"
                pattern = _key_pattern(call, cell.source)
                wanted = sorted(k for k in keep | forward if pattern.match(k))
                if wanted or any(pattern.match(prefix + "x") for prefix in KEEP_PREFIXES):
                    text += f"\nglue({key_src}, getattr({NAMESPACE}, {key_src}), display=False)"
                    report.kept.extend(wanted)
            replacements.append((call, text))
        if len(figures) > 1:
            raise ConversionError(f"{where} cell {index}: glues {len(figures)} figures; myst-nb "
                                  "gives a cell one figure caption, so split the cell")
        cell.source = _replace_calls(cell.source, replacements)
        if figures:
            key = figures[0]
            if not re.search(rf"\bplt\.close\(", cell.source):
                raise ConversionError(f"{where} cell {index}: figure {key!r} is not closed after "
                                      "glue; add plt.close(fig) so it is not shown twice")
            block_cell, match = figure_blocks[key]
            cell.metadata["mystnb"] = _parse_figure(match, f"{where} cell {block_cell}")
            report.figures.append(key)

    # 4. Remove the converted figure blocks (and markdown cells left empty).
    for key in report.figures:
        block_cell, _ = figure_blocks[key]
        cell = cells[block_cell]
        cell.source = FIGURE.sub(lambda m: "" if m.group("key") == key else m.group(0), cell.source)
        cell.source = re.sub(r"\n{3,}", "\n\n", cell.source).strip("\n")
    nb.cells = [c for c in cells if not (c.cell_type == "markdown" and not c.source.strip())]

    # 5. The setup cell: the namespace, and the glue import only while glue is still used.
    _fix_setup(nb, where)
    if macros:
        _set_macros(nb, macros)
    if any(EVAL_ROLE in c.source for c in nb.cells if c.cell_type == "markdown"):
        # {eval} needs a kernel while the page is read; other chapters keep the global mode
        nb.metadata.setdefault("mystnb", {})["execution_mode"] = "inline"

    # 6. myst-nb (inline mode) runs a `remove-cell` cell only when the next shown code cell runs,
    #    so text after it would be evaluated too early; hidden input and output keep the order.
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and "remove-cell" in tags and re.search(rf"\b{NAMESPACE}\b", cell.source):
            at = tags.index("remove-cell")
            cell.metadata["tags"] = tags[:at] + ["remove-input", "remove-output"] + tags[at + 1:]
    report.kept = sorted(set(report.kept))
    return report


def _fix_setup(nb: nbformat.NotebookNode, where: str) -> None:
    code = [c for c in nb.cells if c.cell_type == "code"]
    uses_prose = any(re.search(rf"\b{NAMESPACE}\b", c.source) for c in code) or any(
        f"{{eval}}`f\"{{{NAMESPACE}." in c.source for c in nb.cells if c.cell_type == "markdown")
    uses_glue = any(_glue_calls(c.source, where) for c in code if "glue" in c.source) or any(
        "{glue" in c.source for c in nb.cells if c.cell_type == "markdown")
    importer = next((c for c in code if re.search(r"^from myst_nb import glue$", c.source, re.M)), None)
    if importer is None:
        if uses_glue:
            raise ConversionError(f"{where}: glue is used but no cell has `from myst_nb import glue`")
        if uses_prose and not any(f"{NAMESPACE} = SimpleNamespace()" in c.source for c in code):
            raise ConversionError(f"{where}: no setup cell to define `{NAMESPACE}` in")
        return
    lines = importer.source.split("\n")
    if uses_prose and not any(l.startswith(f"{NAMESPACE} = SimpleNamespace()") for l in lines):
        at = lines.index("from myst_nb import glue")
        if "from types import SimpleNamespace" not in lines:
            lines.insert(at, "from types import SimpleNamespace")
        while lines and not lines[-1].strip():
            lines.pop()
        lines.append(SETUP_LINE)
    if not uses_glue:
        lines.remove("from myst_nb import glue")
    importer.source = "\n".join(lines)


def convert_file(path: Path, pages: list[Path], write: bool = True) -> tuple[bool, Report]:
    """Convert one notebook file; returns (changed, report)."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    report = convert(nb, external_keys(path, pages), where=str(path), stem=path.stem,
                     macros=book_macros(path))
    new = nbformat.writes(nb)
    changed = new != text
    if changed and write:
        path.write_text(new, encoding="utf-8")
    return changed, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--pages", type=Path, default=None,
                        help="folder whose .md/.ipynb pages may read glue keys (default: the "
                             "notebook's own folder)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any would change")
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        folder = args.pages or path.parent
        pages = sorted(p for p in folder.rglob("*") if p.suffix in (".md", ".ipynb")
                       and "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)
        try:
            changed, report = convert_file(path, pages, write=not args.check)
        except ConversionError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
            continue
        verb = ("would change" if args.check else "converted") if changed else "unchanged"
        print(f"{path}: {verb}; {report.numbers} numbers, {len(report.figures)} figures; "
              f"glue kept for {', '.join(report.kept) or 'none'}")
        for key in report.forward:
            print(f"  warning: {key!r} is quoted before the cell that computes it: left as a "
                  "glue reference, which JupyterLab cannot show", file=sys.stderr)
        if changed and args.check:
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())

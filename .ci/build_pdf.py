"""The whole book as one PDF, printed by Chromium from the executed website build.

Run after ``jupyter-book build .``::

    python .ci/build_pdf.py _build/html

It serves the built site on 127.0.0.1, opens the home page in the system Chromium
(Playwright), replaces its article with a title page, a table of contents and every page of
``_toc.yml`` in reading order (each page's own HTML, so figures and outputs are those the build
executed), typesets the math with the MathJax that ships with the site, and prints it with page
numbers and a PDF outline. The table of contents gets its page numbers from a first print.
The PDF is written to ``<html_dir>/you-do-need-math-for-ml.pdf``, where the home page links to it,
and then checked: every chapter title present, a page count that fits, figures present, no raw
TeX, no unrendered glue markup and no figure shown as its text repr.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

import yaml
from playwright.sync_api import Page, sync_playwright
from pypdf import PdfReader

from check_site import serve

PDF_NAME = "you-do-need-math-for-ml.pdf"
CHROMIUM = "/usr/bin/chromium"

PRINT_CSS = """
@page { size: A4; margin: 18mm 16mm 20mm 16mm; }
html, body { background: white !important; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-footer, .bd-footer-content,
.bd-header-article, .prev-next-area, .headerlink, .skip-link, #pst-back-to-top,
details.hide.above-input, .bd-footer-article, #jb-print-docs-body { display: none !important; }
.bd-main .bd-content .bd-article h1:first-of-type { display: block !important; }
.bd-main .bd-content .bd-article-container { max-width: 100% !important; padding: 0 !important; }
.bd-page-width { max-width: 100% !important; }
pre { white-space: pre-wrap !important; word-break: break-word; overflow: visible !important; }
div.cell_output img { max-width: 100% !important; page-break-inside: avoid; }
figure, .cell_output, .cell_input { break-inside: avoid; }
section.book-page { break-before: page; }
h1, h2, h3 { break-after: avoid; }
.book-title { text-align: center; margin-top: 35vh; }
.book-title h1 { font-size: 2.6em; border: none; }
.book-toc { break-before: page; }
.book-toc ol { list-style: none; padding-left: 0; }
.book-toc li.part { margin-top: 1em; font-weight: bold; }
.book-toc li.page { display: flex; align-items: baseline; margin: 0.2em 0; }
.book-toc li.page a { flex: 0 1 auto; }
.book-toc li.page .leader { flex: 1 0 2em; border-bottom: 1px dotted #999; margin: 0 0.5em; }
"""


def reading_order(toc_file: Path) -> list[tuple[str | None, str]]:
    """(part caption, page path without suffix) for every page of the table of contents."""
    toc = yaml.safe_load(toc_file.read_text(encoding="utf-8"))
    pages: list[tuple[str | None, str]] = [(None, toc["root"])]
    for part in toc.get("parts", []):
        pages += [(part.get("caption"), entry["file"]) for entry in part.get("chapters", [])]
    return pages


def page_title(page: Page, url: str) -> str:
    """The page's numbered title as the site shows it ("3. Prediction intervals")."""
    title = page.evaluate("async u => new DOMParser().parseFromString(await (await fetch(u)).text(), "
                          "'text/html').title", url)
    return title.rsplit(" — ", 1)[0].strip()


def assemble(page: Page, base: str, pages: list[tuple[str | None, str]], titles: list[str],
             numbers: dict[str, int] | None) -> None:
    """Replace the home page's article by the title page, the contents and every page."""
    toc_rows, last_part = [], None
    for (part, _), (i, title) in zip(pages, enumerate(titles)):
        if part and part != last_part:
            toc_rows.append(f'<li class="part">{part}</li>')
            last_part = part
        number = "" if numbers is None else numbers.get(title, "")
        toc_rows.append(f'<li class="page"><a href="#book-page-{i}">{title}</a>'
                        f'<span class="leader"></span><span>{number}</span></li>')
    today = datetime.date.today().isoformat()
    page.evaluate("""async ([base, pages, titles, head]) => {
        const article = document.querySelector('article.bd-article');
        article.innerHTML = head;
        for (let i = 0; i < pages.length; i++) {
            const html = await (await fetch(base + pages[i] + '.html')).text();
            const doc = new DOMParser().parseFromString(html, 'text/html');
            const section = document.createElement('section');
            section.className = 'book-page';
            section.id = 'book-page-' + i;
            section.innerHTML = doc.querySelector('article.bd-article').innerHTML;
            const h1 = section.querySelector('h1');
            if (h1) { h1.textContent = titles[i]; }
            article.appendChild(section);
        }
    }""", [base, [p for _, p in pages], titles,
           f'<div class="book-title"><h1>You do need math for ML</h1>'
           f'<p>The mathkit authors</p><p>Printed from the executed website build, {today}</p></div>'
           f'<div class="book-toc"><h2>Contents</h2><ol>{"".join(toc_rows)}</ol></div>'])
    page.evaluate("async () => { MathJax.typesetClear(); await MathJax.typesetPromise(); }")
    page.wait_for_load_state("networkidle")


def print_pdf(page: Page, out: Path) -> None:
    page.pdf(path=str(out), format="A4", print_background=True, outline=True, tagged=True,
             display_header_footer=True, header_template="<span></span>",
             footer_template='<div style="font-size:8px;width:100%;text-align:center">'
                             '<span class="pageNumber"></span></div>',
             margin={"top": "18mm", "bottom": "20mm", "left": "16mm", "right": "16mm"})


def title_pages(pdf: Path, titles: list[str]) -> dict[str, int]:
    """The 1-based page on which each title first appears as a page's opening line, after the contents."""
    texts = [p.extract_text() or "" for p in PdfReader(pdf).pages]
    found, start = {}, 2
    for title in titles:
        for k in range(start, len(texts)):
            if _normalise(title) in _normalise(texts[k][:400]):
                found[title] = k + 1
                start = k + 1
                break
    return found


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("“", '"').replace("”", '"').replace("’", "'").strip()


def check(pdf: Path, titles: list[str], n_images: int) -> list[str]:
    reader = PdfReader(pdf)
    texts = [p.extract_text() or "" for p in reader.pages]
    text = _normalise(" ".join(texts))
    problems = [f"chapter title missing: {t}" for t in titles if _normalise(t) not in text]
    if len(reader.pages) < 4 * len(titles):
        problems.append(f"only {len(reader.pages)} pages for {len(titles)} pages of the book")
    images = sum(len(p.images) for p in reader.pages)
    if images < n_images:
        problems.append(f"{images} images in the PDF, the site's pages have {n_images}")
    stray = re.findall(r"\\(?:frac|tfrac|mathrm|operatorname|begin|end|sum|int)\b|\$\$|\\\(|\\\[", text)
    if stray:
        problems.append(f"raw TeX in the text: {sorted(set(stray))[:5]}")
    for marker in ("{glue", "{eq}", "{cite", "<Figure size", "```"):
        if marker in text:
            problems.append(f"unrendered markup in the text: {marker}")
    if not reader.outline:
        problems.append("no PDF outline")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html_dir", type=Path)
    ap.add_argument("--toc", type=Path, default=Path("_toc.yml"))
    args = ap.parse_args()
    root = args.html_dir.resolve()
    pages = reading_order(args.toc)
    out = root / PDF_NAME
    server, port = serve(root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            base = f"http://127.0.0.1:{port}/"
            page.goto(base + pages[0][1] + ".html", wait_until="networkidle")
            page.evaluate("async () => { await MathJax.startup.promise; }")
            page.add_style_tag(content=PRINT_CSS)
            titles = [page_title(page, base + path + ".html") for _, path in pages]
            n_images = sum(page.evaluate(
                "async u => new DOMParser().parseFromString(await (await fetch(u)).text(), 'text/html')"
                ".querySelectorAll('article.bd-article img').length", base + path + ".html") for _, path in pages)
            assemble(page, base, pages, titles, None)
            print_pdf(page, out)
            numbers = title_pages(out, titles)
            page.goto(base + pages[0][1] + ".html", wait_until="networkidle")
            page.evaluate("async () => { await MathJax.startup.promise; }")
            page.add_style_tag(content=PRINT_CSS)
            assemble(page, base, pages, titles, numbers)
            print_pdf(page, out)
            browser.close()
    finally:
        server.shutdown()
    problems = check(out, titles, n_images)
    n_pages = len(PdfReader(out).pages)
    print(f"{out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}: "
          f"{n_pages} pages, {len(titles)} book pages, {n_images} figures")
    for t in titles:
        print(f"  p. {numbers.get(t, '?'):>3}  {t}")
    for problem in problems:
        print("  -", problem)
    print(f"{0 if problems else 1} passed, {1 if problems else 0} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

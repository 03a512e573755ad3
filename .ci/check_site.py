"""Open every page of the built book in headless Chromium (no network) and check it.

For each HTML page: after MathJax has run, every math element holds an ``mjx-container``
and no MathJax error; every local image, download and internal link (with its #anchor)
resolves; no script, stylesheet or image is fetched from a remote host; notebook pages carry
their launch buttons. Usage::

    python .ci/check_site.py _build/html [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import yaml

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic",
    "--hide-scrollbars",
]
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}


class PageParser(HTMLParser):
    """Collects what the checks need from one HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.remote_assets: list[str] = []
        self.math_elements = 0
        self.mjx_containers = 0
        self.mjx_errors = 0
        self.text: list[str] = []  # prose only, outside code, scripts and rendered math
        self.all_text: list[str] = []
        self._skip_text = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "style", "pre", "code", "mjx-container", "textarea"):
            self._skip_text += 1
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        classes = a.get("class", "").split()
        if "math" in classes and tag in ("span", "div"):
            self.math_elements += 1
        if tag == "mjx-container":
            self.mjx_containers += 1
        if tag == "mjx-merror":
            self.mjx_errors += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        asset = a.get("src") if tag in ("script", "img") else (
            a.get("href") if tag == "link" and a.get("rel", "") in ("stylesheet", "preload", "icon") else None)
        if asset and urlsplit(asset).scheme in ("http", "https") or (asset or "").startswith("//"):
            self.remote_assets.append(asset)


    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "pre", "code", "mjx-container", "textarea") and self._skip_text:
            self._skip_text -= 1

    def handle_data(self, data: str) -> None:
        self.all_text.append(data)
        if not self._skip_text:
            self.text.append(data)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def rendered_dom(url: str, screenshot: Path | None) -> str:
    with tempfile.TemporaryDirectory() as profile:
        base = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
        if screenshot is not None:
            subprocess.run([*base, "--window-size=1280,2000", f"--screenshot={screenshot}", url],
                           capture_output=True, timeout=120, check=True)
    return dom


def resolve(page: Path, ref: str, root: Path) -> Path:
    path = unquote(urlsplit(ref).path)
    target = (page.parent / path).resolve() if path else page
    if target.is_dir():
        target = target / "index.html"
    return target


def redirect_target(html: str) -> str | None:
    """The URL of a ``<meta http-equiv="refresh">`` redirect page, else None."""
    match = re.search(r'http-equiv="refresh"[^>]*content="\d+;\s*url=([^"]+)"', html, re.I)
    return match.group(1) if match else None


def check_page(page: Path, root: Path, port: int, shots: Path | None) -> list[str]:
    rel = page.relative_to(root).as_posix()
    target = redirect_target(page.read_text(encoding="utf-8"))
    if target is not None:  # the landing page only forwards to the book's root page
        return [] if resolve(page, target, root).is_file() else [f"{rel}: redirect to missing {target}"]
    shot = shots / (rel.replace("/", "_") + ".png") if shots else None
    dom = parse(rendered_dom(f"http://127.0.0.1:{port}/{rel}", shot))
    problems = []
    if dom.math_elements and dom.mjx_containers < dom.math_elements:
        problems.append(f"math not rendered: {dom.math_elements} math elements, "
                        f"{dom.mjx_containers} mjx-container")
    if dom.mjx_errors:
        problems.append(f"{dom.mjx_errors} MathJax errors (undefined macro or bad TeX)")
    for src in dom.images:
        if urlsplit(src).scheme in ("", "file") and not src.startswith("data:"):
            if not resolve(page, src, root).is_file():
                problems.append(f"missing image {src}")
    for href in dom.links:
        if urlsplit(href).scheme or href.startswith(("//", "mailto:")):
            continue
        target_ref, anchor = urldefrag(href)
        target = resolve(page, target_ref, root) if target_ref else page
        if not target.exists():
            problems.append(f"broken link {href}")
        elif anchor and target.suffix == ".html":
            ids = dom.ids if target == page else parse(target.read_text(encoding="utf-8")).ids
            if unquote(anchor) not in ids:
                problems.append(f"broken anchor {href}")
    # MathJax loads its TeX extensions (e.g. boldsymbol) by absolute URL from the site itself:
    # an asset on the page's own origin is local if the file is in the build
    origin = f"http://127.0.0.1:{port}/"
    for asset in dom.remote_assets:
        if not asset.startswith(origin):
            problems.append(f"remote asset {asset}")
        elif not (root / unquote(urlsplit(asset).path).lstrip("/")).is_file():
            problems.append(f"missing asset {asset}")
    text = " ".join(dom.text)
    if "<Figure size" in " ".join(dom.all_text):
        problems.append("a figure shows as its text repr instead of an image")
    if re.search(r"\{(?:glue|eval)(?::\w+)?\}", text):
        problems.append("raw {glue}/{eval} markup in the text")
    stray = re.findall(r"\$\\[A-Za-z]+|\\(?:frac|tfrac|operatorname|mathrm)\{", text)
    if stray:
        problems.append(f"unrendered TeX in the text: {sorted(set(stray))[:5]}")
    source_ipynb = root / "_sources" / Path(rel).with_suffix(".ipynb")
    if source_ipynb.exists():
        # a MyST text notebook (e.g. the takeaways) is executed too, but launches as its .md source
        text_notebook = (root / "_sources" / Path(rel).with_suffix(".md")).exists()
        binder = binder_link(Path(rel).with_suffix(".md" if text_notebook else ".ipynb").as_posix())
        if binder not in dom.links:
            problems.append(f"notebook page without the Binder launch link {binder}")
        if not any(h.endswith(".ipynb") for h in dom.links):
            problems.append("notebook page without an .ipynb download")
    return [f"{rel}: {p}" for p in problems]


def binder_link(notebook: str) -> str:
    """The launch link _config.yml asks for: JupyterLab on the notebook, in the named repository."""
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "_config.yml").read_text())
    repo, launch = config["repository"], config["launch_buttons"]
    slug = urlsplit(repo["url"]).path.strip("/")
    path = "/".join(p for p in (repo.get("path_to_book", "").strip("/"), notebook) if p)
    return (f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{slug}/{repo['branch']}"
            f"?urlpath=lab/tree/{path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("html_dir", type=Path)
    ap.add_argument("--screenshots", type=Path, default=None, help="also save a PNG of each page here")
    args = ap.parse_args()
    root = args.html_dir.resolve()
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p for p in root.rglob("*.html")
                   if p.name not in SKIP_PAGES and not p.relative_to(root).parts[0].startswith("_"))
    if not pages:
        print(f"no pages found under {root}")
        return 1
    server, port = serve(root)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda p: check_page(p, root, port, args.screenshots), pages))
    finally:
        server.shutdown()
    problems = [p for page_problems in results for p in page_problems]
    for page, page_problems in zip(pages, results):
        print(f"{'FAIL' if page_problems else 'ok  '} {page.relative_to(root)}")
    for p in problems:
        print("  -", p)
    print(f"{len(pages) - sum(bool(r) for r in results)} passed, {sum(bool(r) for r in results)} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

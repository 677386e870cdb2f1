"""The built website in a real browser, offline: headless Chromium (Debian's, driven by Playwright)
opens every page of both editions with every request outside the built site blocked.

Per page: no console error, every image loaded and described, the math typeset, nothing blocked
that the page asked for. Lab pages: the Colab link opens that lab's committed student notebook.
The search page finds a term. A screenshot of each page lands in tests/_artifacts/screenshots/.

Fixtures (tests/conftest.py): ``student_book`` and ``instructor_book``, each a built edition
(``tests/notebooks.py::Book``; its ``.html`` is the ``_build/html`` folder).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from notebooks import ROOT

pytestmark = pytest.mark.book  # tests/conftest.py puts each edition's tests with that edition's build
EDITIONS = ("student", "instructor")
SHOTS = ROOT / "tests" / "_artifacts" / "screenshots"
SKIP_PAGES = {"genindex.html"}  # Sphinx's empty general index (the book has no index entries)
REPO = "https://github.com/tl-hands-on/transfer-learning-hands-on"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no Chromium on PATH: install Debian's `chromium` (make setup does)")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield b
        b.close()


def pages_of(site: Path) -> list[str]:
    """Every HTML page of the book (relative paths), Sphinx's own assets left out."""
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not {"_static", "_sources", "_images"} & set(p.relative_to(site).parts)
                  and p.name not in SKIP_PAGES and 'http-equiv="Refresh"' not in p.read_text()[:2000])


class Visit:
    """One page load with everything outside ``site`` blocked; what the page reported."""

    def __init__(self, browser, site: Path, rel: str, query: str = ""):
        self.site_url = site.resolve().as_uri() + "/"
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.goto(self.site_url + rel + query, wait_until="load")
        # MathJax 3 typesets asynchronously: wait for its startup promise when the page loads it
        self.page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)",
                                    timeout=20_000)
        self.page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")
        self.page.evaluate("""() => Promise.all([document.fonts.ready, ...Array.from(document.images).map(i =>
            i.complete ? null : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); }))])""")

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.site_url) or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def close(self) -> None:
        self.context.close()


# text outside code, scripts and styles; raw TeX delimiters there mean math that was not typeset
_PROSE_TEXT = """() => {
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER', 'MJX-ASSISTIVE-MML']);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(n) { for (let e = n.parentElement; e; e = e.parentElement) if (skip.has(e.tagName)) return NodeFilter.FILTER_REJECT;
                    return NodeFilter.FILTER_ACCEPT; }});
  let out = []; while (walker.nextNode()) out.push(walker.currentNode.nodeValue); return out.join(' ');
}"""

_IMAGES = """() => Array.from(document.images).filter(i => i.getClientRects().length || i.closest('main'))
  .map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, alt: (i.getAttribute('alt') || '').trim()}))"""

_MATH = """() => ({math: document.querySelectorAll('main .math').length,
               typeset: document.querySelectorAll('main .math mjx-container').length,
               errors: document.querySelectorAll('mjx-merror').length})"""


def check_page(v: Visit, rel: str) -> list[str]:
    """Everything wrong with the page ``rel`` as the browser saw it."""
    problems = [f"{rel}: {e}" for e in v.errors]
    problems += [f"{rel}: blocked a request outside the site: {u}" for u in v.blocked]
    problems += [f"{rel}: a request failed: {u}" for u in v.failed if "blockedbyclient" not in u.lower()]
    for img in v.page.evaluate(_IMAGES):
        if not img["ok"]:
            problems.append(f"{rel}: image not loaded: {img['src']}")
        if not img["alt"] or Path(img["alt"]).name == Path(img["src"] or "").name:
            problems.append(f"{rel}: image without a description (alt): {img['src']}")
    math = v.page.evaluate(_MATH)
    if math["typeset"] < math["math"]:
        problems.append(f"{rel}: {math['math'] - math['typeset']} of {math['math']} formulas not typeset")
    if math["errors"]:
        problems.append(f"{rel}: {math['errors']} MathJax errors")
    prose = v.page.evaluate(_PROSE_TEXT)
    if "Test case failed" in prose or "\u274c" in prose:
        problems.append(f"{rel}: shows a failing test block (check cells should show a neutral note)")
    for raw in ("\\(", "\\[", "$$"):
        if raw in prose:
            i = prose.index(raw)
            problems.append(f"{rel}: raw TeX {raw!r} in the text: ...{prose[max(0, i - 60):i + 60]}...")
    return problems


def screenshot(v: Visit, edition: str, rel: str) -> Path:
    out = SHOTS / edition / (rel.replace("/", "__").removesuffix(".html") + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    v.page.screenshot(path=str(out), full_page=True)
    return out


def colab_target(v: Visit) -> str | None:
    """The repository path the page's Colab launch button opens (None: no Colab button)."""
    hrefs = v.page.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
    if not hrefs:
        return None
    path = urlparse(hrefs[0]).path
    m = re.match(r"^/github/tl-hands-on/transfer-learning-hands-on/blob/[^/]+/(.+)$", path)
    assert m, f"the Colab link does not open a notebook of {REPO}: {hrefs[0]}"
    return m.group(1)


@pytest.fixture(scope="module", params=EDITIONS)
def edition(request):
    return request.param, request.getfixturevalue(f"{request.param}_book").html


def test_every_page_renders_offline(browser, edition):
    name, site = edition
    problems, shots = [], []
    for rel in pages_of(site):
        v = Visit(browser, site, rel)
        try:
            problems += check_page(v, rel)
            shots.append(screenshot(v, name, rel))
        finally:
            v.close()
    assert len(shots) >= 10, f"{name}: only {len(shots)} pages found in {site}"
    assert not problems, f"{name} edition:\n" + "\n".join(problems)


def test_chapters_show_typeset_math_and_their_labs_figures(browser, edition):
    """Every chapter paired with a lab shows at least one figure of that lab; the front page too."""
    name, site = edition
    chapters = {p.stem for p in (site / "labs").glob("*.html")}
    expect = {f"chapters/{c}.html": c for c in chapters} | {"chapters/recipes.html": "strategies",
                                                            "intro.html": "forgetting"}
    for rel, lab in expect.items():
        if not (site / rel).is_file():
            continue
        v = Visit(browser, site, rel)
        try:
            srcs = v.page.eval_on_selector_all("figure.lab-figure img", "els => els.map(e => e.getAttribute('src'))")
            assert any(f"labs-{lab}-fig_" in s for s in srcs), f"{name}/{rel}: no figure of labs/{lab}"
            loaded = v.page.eval_on_selector_all("figure.lab-figure img", "els => els.every(e => e.naturalWidth > 0)")
            assert loaded, f"{name}/{rel}: a lab figure did not load"
        finally:
            v.close()


def test_lab_colab_links_open_the_student_notebooks(browser, edition):
    """Each lab page's Colab button opens that lab's committed student notebook (which
    tests/test_student_notebooks.py keeps up to date and free of solutions and hidden tests)."""
    name, site = edition
    labs = sorted((site / "labs").glob("*.html"))
    assert labs, f"{name}: no lab pages"
    for page in labs:
        v = Visit(browser, site, f"labs/{page.name}")
        try:
            target = colab_target(v)
        finally:
            v.close()
        assert target == f"student/labs/{page.stem}.ipynb", f"{name}/{page.name}: Colab opens {target}"
        assert (ROOT / target).is_file(), f"{target} is not committed"
        assert "# BEGIN SOLUTION" not in (ROOT / target).read_text(), f"{target} is a master, not a student notebook"


def test_search_finds_a_term_offline(browser, edition):
    name, site = edition
    v = Visit(browser, site, "search.html", "?q=forgetting")
    try:
        v.page.wait_for_function(
            "() => document.querySelectorAll('#search-results li, ul.search li').length > 0", timeout=30_000)
        hits = v.page.eval_on_selector_all("#search-results li a, ul.search li a", "els => els.map(e => e.href)")
        screenshot(v, name, "search")
        problems = check_page(v, "search.html")
    finally:
        v.close()
    assert any("forgetting" in h for h in hits), f"{name}: search for 'forgetting' found {hits[:5]}"
    assert not problems, "\n".join(problems)


def test_chapter_figures_are_the_ones_their_labs_drew(student_book):
    """A chapter's lab figure is byte for byte the PNG its lab glued in the same build, and the
    same image the lab page shows (no browser needed)."""
    import base64
    import hashlib
    import json

    site = student_book.html
    pages = [site / "intro.html", *sorted((site / "chapters").glob("*.html"))]
    seen = 0
    for page in pages:
        html = page.read_text()
        for fig in re.findall(r'<figure class="lab-figure[^"]*"[^>]*>(.*?)</figure>', html, re.S):
            src = re.search(r'<img[^>]*src="([^"]+)"', fig).group(1)
            m = re.fullmatch(r"labs-(\w+)-(\w+)-([0-9a-f]{12})\.png", Path(src).name)
            assert m, f"{page.name}: unexpected lab figure file {src}"
            lab, key, short = m.groups()
            png = (page.parent / src).resolve().read_bytes()
            digest = hashlib.sha256(png).hexdigest()
            assert digest[:12] == short, f"{page.name}: {src} does not hold the figure it is named after"
            glued = json.loads((site.parent / "jupyter_execute" / "labs" / f"{lab}.glue.json").read_text())
            assert base64.b64decode(glued[key]["data"]["image/png"]) == png, \
                f"{page.name}: {src} is not the {key} that labs/{lab} drew in this build"
            assert f"{digest}.png" in (site / "labs" / f"{lab}.html").read_text(), \
                f"{page.name}: labs/{lab}.html does not show the same {key}"
            seen += 1
    assert seen >= 6, f"only {seen} lab figures in the chapters"

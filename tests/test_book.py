"""The website: it builds offline in the full profile (the numbers readers see), quotes the labs'
numbers, shows their figures, leaks no solution, and a broken notebook makes the build fail."""
from __future__ import annotations

import html as html_lib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from notebooks import ROOT, lab_notebooks

pytestmark = pytest.mark.book
JB = str(Path(sys.executable).with_name("jupyter-book"))


def jb_build(src: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([JB, "build", str(src), "-W", "-n", "--keep-going", "--all", "--path-output", str(out)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_broken_notebook_fails_the_book_build(tmp_path):
    """The book's own execution settings turn a notebook error into a failed build."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.pop("bibtex_bibfiles", None)
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: broken\n")
    (tmp_path / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Broken"),
                                         nbformat.v4.new_code_cell("raise RuntimeError('deliberately broken')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "broken.ipynb"))
    r = jb_build(tmp_path, tmp_path / "out")
    assert r.returncode != 0, "a notebook that raises must fail the book build"


def test_book_builds_offline(student_book):
    html = student_book.html
    assert (html / "index.html").is_file()
    assert (html / "chapters" / "forgetting.html").is_file()
    assert (html / "labs" / "forgetting.html").is_file()


def test_book_has_no_solution_or_hidden_test(student_book):
    r = subprocess.run([sys.executable, "-m", "tlutils.grading", "check-leaks", str(student_book.html)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    html = (student_book.html / "labs" / "forgetting.html").read_text()
    assert "name.startswith(&quot;fc.&quot;)" not in html and "name.startswith(\"fc.\")" not in html  # a q1 solution line


GLUE_TEXT = re.compile(r"\{glue:text\}`(?:\.\./)?labs/(\w+)\.ipynb::(\w+)(?::([^`]*))?`")


def _page_text(path: Path) -> str:
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", path.read_text()))


def test_chapters_quote_the_numbers_their_labs_recorded(student_book):
    """Every inline number a chapter glues is the value its lab recorded in the same build."""
    quoted = 0
    for md in sorted((ROOT / "chapters").glob("*.md")) + [ROOT / "intro.md"]:
        page = md.relative_to(ROOT).with_suffix(".html")
        text = _page_text(student_book.html / page)
        for lab, key, fmt in GLUE_TEXT.findall(md.read_text()):
            value = student_book.glued(lab)[key]
            assert format(value, fmt or "") in text, f"{page}: {lab}::{key} should read {format(value, fmt or '')}"
            quoted += 1
        assert not re.search(r"glue:text|\w+\.ipynb::\w+", text), f"{page}: an unresolved glue reference"
    assert quoted >= 50, f"only {quoted} glued numbers in the chapters"


def test_explorers_keep_their_widget_state_and_a_static_figure(student_book):
    labs = [nb for nb in lab_notebooks() if "explore.explorer(" in nb.read_text()]
    assert len(labs) >= 2, "at least two labs should have an interactive explorer"
    for nb in labs:
        html = (student_book.html / "labs" / f"{nb.stem}.html").read_text()
        assert "application/vnd.jupyter.widget-state+json" in html, f"{nb.stem}: widget state not embedded"
        # progress bars are widgets too: find the explorer's own box by its class in the saved state
        saved = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', html, re.S)
        state = json.loads(saved.group(1))["state"] if saved else {}
        boxes = [mid for mid, m in state.items() if "tlutils-explorer" in m.get("state", {}).get("_dom_classes", [])]
        assert boxes, f"{nb.stem}: the explorer's controls are not in the saved widget state"
        for model_id in boxes:
            view = html.index(f'"model_id": "{model_id}"')
            assert "<img" in html[view:view + 20000], f"{nb.stem}: no static figure below the explorer's controls"


def test_lab_page_shows_figures_and_launch_button(student_book):
    html = (student_book.html / "labs" / "forgetting.html").read_text()
    assert html.count("<img") >= 4, "the lab page should show its figures"
    for nb in lab_notebooks():
        html = (student_book.html / "labs" / f"{nb.stem}.html").read_text()
        assert "colab.research.google.com" in html, f"{nb.stem}: the Colab launch button is missing"

"""The website: it builds offline in the ci profile, quotes the labs' numbers, shows their
figures, leaks no solution, and a broken notebook makes the build fail."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
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


@pytest.fixture(scope="module")
def ci_book(tmp_path_factory):
    """`make book-ci`, into a temporary folder: stage the student edition and build it."""
    out = tmp_path_factory.mktemp("book")
    src = out / "src"
    py = sys.executable
    subprocess.run([py, "-m", "tlutils.grading", "stage-book", "--edition", "student", "--dest", str(src)],
                   check=True, cwd=ROOT)
    r = jb_build(src, out, env={"TLUTILS_PROFILE": "ci"})
    assert r.returncode == 0, (r.stdout[-3000:] + r.stderr[-3000:])
    return out / "_build" / "html"


def test_book_builds_offline_in_ci_profile(ci_book):
    assert (ci_book / "index.html").is_file()
    assert (ci_book / "chapters" / "forgetting.html").is_file()
    assert (ci_book / "labs" / "forgetting.html").is_file()


def test_book_has_no_solution_or_hidden_test(ci_book):
    r = subprocess.run([sys.executable, "-m", "tlutils.grading", "check-leaks", str(ci_book)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    html = (ci_book / "labs" / "forgetting.html").read_text()
    assert "name.startswith(&quot;fc.&quot;)" not in html and "name.startswith(\"fc.\")" not in html  # a q1 solution line


def test_chapter_quotes_the_labs_numbers(ci_book):
    """The chapter's glued numbers are the ones the lab computes (same seed, same profile)."""
    # the book's executed copy drops glue outputs, so read the lab's printed summary
    executed = nbformat.read(str(ci_book.parent / "jupyter_execute" / "labs" / "forgetting.ipynb"), 4)
    summary = next(c for c in executed.cells if "NBVAL_CHECK_OUTPUT" in c.source)
    text = "".join(o.get("text", "") for o in summary.outputs)
    g = {k: ast.literal_eval(v) for k, v in (line.split(None, 1) for line in text.splitlines() if line.strip())}
    html = re.sub(r"<[^>]+>", " ", (ci_book / "chapters" / "forgetting.html").read_text())
    for key in ("probe_val_acc", "collapse_val_acc", "fixed_val_acc", "source_acc_after_collapse"):
        assert f"{g[key]:.1%}" in html, key
    assert not re.search(r"glue:text|::probe_val_acc", html), "an unresolved glue reference"


def test_explorers_keep_their_widget_state_and_a_static_figure(ci_book):
    labs = [nb for nb in lab_notebooks() if "explore.explorer(" in nb.read_text()]
    assert len(labs) >= 2, "at least two labs should have an interactive explorer"
    for nb in labs:
        html = (ci_book / "labs" / f"{nb.stem}.html").read_text()
        assert "application/vnd.jupyter.widget-state+json" in html, f"{nb.stem}: widget state not embedded"
        # progress bars are widgets too: find the explorer's own box by its class in the saved state
        saved = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', html, re.S)
        state = json.loads(saved.group(1))["state"] if saved else {}
        boxes = [mid for mid, m in state.items() if "tlutils-explorer" in m.get("state", {}).get("_dom_classes", [])]
        assert boxes, f"{nb.stem}: the explorer's controls are not in the saved widget state"
        for model_id in boxes:
            view = html.index(f'"model_id": "{model_id}"')
            assert "<img" in html[view:view + 20000], f"{nb.stem}: no static figure below the explorer's controls"


def test_lab_page_shows_figures_and_launch_button(ci_book):
    html = (ci_book / "labs" / "forgetting.html").read_text()
    assert html.count("<img") >= 4, "the lab page should show its figures"
    for nb in lab_notebooks():
        html = (ci_book / "labs" / f"{nb.stem}.html").read_text()
        assert "colab.research.google.com" in html, f"{nb.stem}: the Colab launch button is missing"
    shutil.rmtree(ci_book.parent / ".jupyter_cache", ignore_errors=True)

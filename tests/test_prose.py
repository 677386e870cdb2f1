"""The book's numbers read as prose: no run number typed by hand in a chapter, no Python repr,
`None` or `nan` on a page, dict-valued results shown as tables."""
from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import pytest

from notebooks import ROOT

# The chapters that report runs (the instructor guide's grading timings and the reference pages are not lab results).
CHAPTERS = sorted(p for p in (ROOT / "chapters").glob("*.md")
                  if p.stem not in ("instructor_guide", "references")) + [ROOT / "intro.md"]

# Numbers that are names or definitions, not results: architectures, image sizes, years, versions...
DEFINITIONAL = re.compile(r"""
      ResNet-\d+ | \b\d+(\s*[x×]\s*\d+)+\b | ImageNet-\w+ | CIFAR-\d+ | \bfloat\d+ | \bbfloat16 | \bfp16 | \btop-\d\b | \b1cycle\b
    | \bconv\d\b | \bbn\d\b | \blayer\d\b | \bL[12](-SP)?\b | \bMMD\^?2 | \bk\s*=\s*\d | \b\d+\s*[x×]\s*\d+\b
    | \b(19|20)\d\d[a-z]?\b | \b[Ss]ection\s+\d+ | \bPython\s+3[\d.]* | \btorch\s*[><=]*\s*\d[\d.]* | \b\d+\.x\b
    | \bH\d\b | \bTF32\b | \bCUDA\s*\d+ | \bx\d\b | \b\d+(\.\d+)?e-?\d+\b
    | \b(Pitfall|Step|Part|Exercise|Question|Item|Figure|Table)\s+\d+ | \b\d+-(class|way|channel)\b
    | \b\d+\s+(classes|channels|corruptions)\b | \bseverit(y|ies)\s+(from\s+)?\d+(\s*\(\w+\))?(\s*(to|and|-|–)\s*\d+(\s*\(\w+\))?)? | Caltech-\d+ | \d+(\.\d+)?° | TensorFlow\s*\d | \[0,\s*1\]
    | \b[Bb]atch(es)?\s+(sizes?\s+)?(of\s+|from\s+)?\d+((\s*,)?\s*(to|and|or|,)\s*\d+)* | \bmomentum\s+(is\s+|of\s+)?0\.\d+
    | \(0\.485,\s*0\.456,\s*0\.406\) | \(0\.229,\s*0\.224,\s*0\.225\) | \bmin\s*/\s*10\b
""", re.X)
# Definitions a chapter states in digits (the architecture, the world, a criterion), reviewed one by one.
ALLOWED = {
    "batchnorm": [r"\bat [24]\b", r"\bat 64\b", r"more than 1 value per channel"],
    "domain_shift": [r"at least 0\.9 in absolute value", r"which is 1 when"],
    "feature_hierarchy": [r"It is 1 when", r"falls toward 0 as", r"\b16 of them\b", r"\(16 for the stem\)", r"\bof 5\b"],
    "glossary": [r"\b60 shape-and-texture classes\b"],
    "recipes": [r"mean about 0 and std about 1", r"is 0 for a one-hot prediction and 1 for a uniform one"],
    "strategies": [r"\b128 numbers\b", r"\b2,048 numbers\b"],
    "intro": [r"\b80 possible pairs\b", r"\b0\.3 million parameters\b"],
}
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*\s*%?")


def _prose(md: str) -> list[str]:
    """The sentences a reader reads: code, math, roles, link targets and directive options removed."""
    out, fence = [], None
    for line in md.splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\{[\w:-]+\})?", line)
        if fence is None and m and (m.group(2) or m.group(1)[0] != ":"):
            # code (no directive) and math are not prose; admonitions, figures, tables are (minus options)
            name = m.group(2) or ""
            fence = (m.group(1), name in ("", "{code-cell}", "{math}", "{glue:}", "{glue}", "{glue:any}"))
            out.append("")
            continue
        if fence is not None and line.strip().startswith(fence[0][:3]) and line.strip().strip(fence[0][0]) == "":
            fence = None
            continue
        if fence is not None and (fence[1] or re.match(r"^\s*:[\w-]+:", line)):
            continue
        out.append(line)
    text = "\n".join(out)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", " ", text)
    text = re.sub(r"^\s*\(\w[\w-]*\)=\s*$", " ", text, flags=re.M)          # labels
    text = re.sub(r"^\s*\d+\.\s", " ", text, flags=re.M)                    # numbered lists
    text = re.sub(r"\]\([^)]*\)", "]", text)                                  # link targets
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"\{cite(:\w+)?\}`[^`]*`", " CITED ", text)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " GLUED ", text)   # roles: glue, doc, ref, math, ...
    text = re.sub(r"`[^`]*`", " CODE ", text)                 # inline code
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z*(])|\n\s*\n", text)
    # a sentence that cites a paper may quote that paper's numbers
    return [s for s in sentences if "CITED" not in s and "et al." not in s]


def typed_numbers(md: str, allowed: list[str] = ()) -> list[str]:
    """Digits in the prose that are neither glued nor definitional."""
    found = []
    for sentence in _prose(md):
        s = DEFINITIONAL.sub(" ", sentence)
        for phrase in allowed:
            s = re.sub(phrase.replace(" ", r"\s+"), " ", s)
        found += [f"{n.strip()!r} in: {' '.join(sentence.split())[:140]}" for n in NUMBER.findall(s)]
    return found


def test_typed_number_detector_finds_a_typed_result():
    md = ("The probe reaches {glue:text}`labs/f.ipynb::probe:.1%` on ResNet-18 with 32x32 images "
          "{cite}`he2019rethinking` reports 91%.\n\nThe fix ends at 91.2%, two points up.\n")
    assert typed_numbers(md) == ["'91.2%' in: The fix ends at 91.2%, two points up."]
    assert typed_numbers(md, [r"at 91\.2%"]) == []
    assert typed_numbers("```python\nlr = 0.5\n```\nSee $e^{-2}$ and `x = 3`.\n") == []


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_no_typed_run_number(md):
    found = typed_numbers(md.read_text(), ALLOWED.get(md.stem, []))
    assert not found, f"{md.name}: numbers typed by hand (glue them from the lab):\n" + "\n".join(found)


REPR = re.compile(r"\{'|\{\d+:|\[0\.|\bnan\b|\bNone\b(?!\s+[a-z])|\bTable\(")


def page_prose(path: Path) -> str:
    """A built page's text without code, code cells and their outputs, scripts, styles and navigation."""
    page = path.read_text()
    page = re.sub(r"<(script|style|pre|code|nav)\b.*?</\1>", " ", page, flags=re.S)
    # code cells (input and output) of lab pages; the glued values in markdown stay
    page = re.sub(r'<div class="cell (docutils )?container.*?(?=<div class="cell |<section|</section>|</article>)', " ",
                  page, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", page))


def _check_pages(book) -> None:
    pages = [p for p in sorted(book.html.rglob("*.html")) if p.parts[-2] not in ("_static", "_sources")
             and p.name not in ("genindex.html", "search.html")]
    assert len(pages) >= 10, pages
    bad = []
    for p in pages:
        text = page_prose(p)
        bad += [f"{p.relative_to(book.html)}: ...{text[max(m.start() - 60, 0):m.end() + 60]!r}..." for m in REPR.finditer(text)]
    assert not bad, "Python reprs in the prose of the website:\n" + "\n".join(bad[:30])


def test_student_edition_prose_has_no_python_repr(student_book):
    _check_pages(student_book)


def test_instructor_edition_prose_has_no_python_repr(instructor_book):
    _check_pages(instructor_book)


def test_glued_tables_render_as_tables(student_book):
    """A chapter that shows a glued dict with the block directive gets an HTML table."""
    shown = 0
    for md in CHAPTERS:
        keys = [key for key, lab in re.findall(r"```\{glue:?\w*\}\s*(\w+)\n:doc:\s*(?:\.\./)?labs/(\w+)\.ipynb",
                                               md.read_text()) if isinstance(student_book.glued(lab).get(key), dict)]
        if keys:   # one table per glued dict
            page = (student_book.html / md.relative_to(ROOT).with_suffix(".html")).read_text()
            assert page.count('class="tlutils-table"') >= len(keys), f"{md.name}: not every one of {keys} is a table"
            shown += len(keys)
    assert shown >= 3, f"only {shown} glued tables in the chapters"


def test_recorded_dict_is_a_table_that_reads_back_as_the_dict():
    import ast

    from IPython.core.formatters import DisplayFormatter

    from tlutils import lab

    lab.record("t", {"probe": {"target": 0.8512, "source": {"mean": 0.9, "std": 0.012}}, "naive": {"target": 0.1}},
               fmt=".1%")
    table = lab.RECORDED["t"]
    bundle, _ = DisplayFormatter().format(table)
    assert ast.literal_eval(bundle["text/plain"]) == {"probe": {"target": 0.8512, "source": {"mean": 0.9, "std": 0.012}},
                                                      "naive": {"target": 0.1}}
    html = bundle["text/html"]
    assert html.count("<tr>") == 3 and "<th>target</th><th>source</th>" in html, html
    assert "<td>85.1%</td><td>90.0% ± 1.2%</td>" in html and "<td>10.0%</td><td></td>" in html, html
    assert "{" not in html and "None" not in html


def test_repr_scan_sees_prose_and_skips_code(tmp_path):
    page = tmp_path / "p.html"
    page.write_text('<p>Gains: <span class="pasted-text">{&#39;a&#39;: 0.1}</span>, crossover None.</p>'
                    '<div class="cell docutils container"><pre>x = None</pre><div class="output">[0.5]</div></div>'
                    '<section><p>None of the runs failed.</p><code>nan</code></section>')
    found = REPR.findall(page_prose(page))
    assert found == ["{'", "None"], found


def test_table_formats_the_columns_a_dict_fmt_names():
    from tlutils.lab import Table

    html = Table({"0.1x peak": {"LR / peak": 0.1, "target": 0.8512, "target sd": 0.0123, "n": 3}},
                 fmt={"target": ".1%", "target sd": ".1%"})._repr_html_()
    assert "<td>0.1</td><td>85.1%</td><td>1.2%</td><td>3</td>" in html, html

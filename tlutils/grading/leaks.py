"""Leak checks: solution or hidden-test text of a lab master in a built site."""
from __future__ import annotations

import html.parser
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .assign import _instructor_lines, student_notebook
from .masters import _default_root, _source, assignment_masters, read_master


def _tokens(text: str) -> str:
    """Words only, single-spaced: robust to syntax highlighting, Markdown rendering and quoting."""
    return " ".join(re.findall(r"\w+", text))


def _contains(haystack: str, snippet: str) -> bool:
    """Whole-word containment of token strings (``a b`` is not in ``a b_c``)."""
    return f" {snippet} " in f" {haystack} "


def _notebook_text(nb: dict) -> str:
    parts: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            parts.append(x)
        elif isinstance(x, list):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)
    walk(nb)
    return "\n".join(parts)


def leak_snippets(master: Path | str, min_words: int = 3, min_chars: int = 12) -> dict[str, list[str]]:
    """Lines of ``master`` that must not reach the student edition: ``{"solution": [...], "hidden test": [...]}``.

    Lines that also occur in the student notebook (prompts, public tests, shared code) or that are
    too short to be distinctive are left out. Snippets are word sequences (see :func:`find_leaks`).
    """
    from otter.assign.solutions import replace_solutions

    m = read_master(master)
    student_text = _tokens(_notebook_text(student_notebook(m.path)))
    out: dict[str, list[str]] = {"solution": [], "hidden test": []}

    def keep(kind: str, line: str) -> None:
        t = _tokens(line)
        if len(t.split()) >= min_words and len(t) >= min_chars and not _contains(student_text, t) and t not in out[kind]:
            out[kind].append(t)

    for q in m.questions:
        for i in q.solution_cells:
            cell = m.cells[i]
            if cell.cell_type == "code":
                prompt = {_tokens(s) for s in replace_solutions(_source(cell).split("\n"), "python")}
                for line in _instructor_lines(_source(cell)):
                    if _tokens(line) not in prompt:
                        keep("solution", line)
            elif cell.cell_type == "markdown":
                for line in _source(cell).split("\n"):
                    keep("solution", line)
        for i in q.hidden_tests:
            lines = _source(m.cells[i]).split("\n")
            if lines and lines[0].lstrip().startswith("#"):
                lines = lines[1:]
            for line in lines:
                keep("hidden test", line)
    return out


class _TextExtractor(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in ("span", "a", "em", "strong", "code", "b", "i"):
            self.parts.append(" ")  # block tags separate words (<td>a</td><td>b</td>)

    def handle_endtag(self, tag: str) -> None:
        self.handle_starttag(tag, [])


def _file_text(path: Path) -> str:
    raw = path.read_text(errors="replace")
    if path.suffix in (".html", ".htm"):
        p = _TextExtractor()
        p.feed(raw)
        return "".join(p.parts)
    if path.suffix == ".ipynb":
        try:
            return _notebook_text(json.loads(raw))
        except json.JSONDecodeError:
            return raw
    return raw


@dataclass
class Leak:
    """A solution or hidden-test snippet of ``lab`` found in ``file``."""

    lab: str
    kind: str
    snippet: str
    file: Path


def find_leaks(html_dir: Path | str, masters: Iterable[Path | str] | None = None,
               root: Path | str | None = None) -> list[Leak]:
    """Scan a built site for the solution and hidden-test text of each lab master.

    For each lab, every text file under ``html_dir`` named after the lab (its page, the ``_sources``
    copy, downloads) is reduced to words (HTML tags, highlighting and quoting
    removed) and searched for each snippet of :func:`leak_snippets`.
    """
    html_dir = Path(html_dir)
    masters = [Path(m) for m in masters] if masters is not None else assignment_masters(_default_root(root) / "labs")
    leaks: list[Leak] = []
    for master in masters:
        snippets = leak_snippets(master)
        files = [f for f in sorted(html_dir.rglob("*")) if f.is_file() and f.name.split(".")[0] == master.stem
                 and f.suffix in (".html", ".htm", ".ipynb", ".txt", ".md", ".py", ".json")]
        for f in files:
            text = _tokens(_file_text(f))
            for kind, items in snippets.items():
                leaks.extend(Leak(master.stem, kind, s, f) for s in items if _contains(text, s))
    return leaks


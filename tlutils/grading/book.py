"""The book's editions (stage-book) and their labs executed ahead of the build (execute-book)."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import nbformat
import yaml

from .assign import instructor_notebook, student_notebook
from .masters import _SKIP_DIRS, GradingError, _default_root, assignment_masters

EDITIONS = ("student", "instructor")

# Book sources staged besides what _toc.yml and _config.yml name (missing ones are skipped).
BOOK_SOURCES = ("_config.yml", "_toc.yml", "intro.md", "references.bib", "chapters", "labs", "_ext",
                "_static", "images", "figures", "assets")
_STAGE_SKIP_FILES = {".OTTER_LOG"}
_BUILD_DIRS = ("_build", "_build_ci", "build")


def _toc_files(toc: Any) -> list[str]:
    """Every ``file``/``root`` entry of a Jupyter Book ``_toc.yml`` (extension-less), recursively."""
    found: list[str] = []
    if isinstance(toc, dict):
        for key in ("root", "file"):
            if isinstance(toc.get(key), str):
                found.append(toc[key])
        for value in toc.values():
            if isinstance(value, (dict, list)):
                found.extend(_toc_files(value))
    elif isinstance(toc, list):
        for item in toc:
            found.extend(_toc_files(item))
    return found


def _book_inputs(root: Path) -> list[Path]:
    """Paths (relative to ``root``) the book needs: fixed sources, toc entries, config-named files."""
    rel: set[Path] = {Path(p) for p in BOOK_SOURCES if (root / p).exists()}
    toc_path = root / "_toc.yml"
    if toc_path.exists():
        for entry in _toc_files(yaml.safe_load(toc_path.read_text()) or {}):
            cands = [root / entry] + [root / f"{entry}{ext}" for ext in (".md", ".ipynb", ".rst")]
            rel.update(c.relative_to(root) for c in cands if c.is_file())
    cfg_path = root / "_config.yml"
    if cfg_path.exists():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        named = list(cfg.get("bibtex_bibfiles") or []) + [cfg.get("logo"), (cfg.get("html") or {}).get("favicon")]
        rel.update(Path(p) for p in named if isinstance(p, str) and p and (root / p).exists())
    return sorted(rel)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write only when the content differs, so Sphinx's incremental build sees unchanged mtimes."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def stage_book(edition: str = "student", root: Path | str | None = None,
               dest: Path | str | None = None, executed: Sequence[Path | str] = ()) -> Path:
    """Copy the book sources into ``dest`` (default ``_build/src/<edition>``) with every lab master
    replaced by its otter student notebook (``student``) or its instructor version (``instructor``).

    ``executed`` (instructor edition only): executed copies of masters, named ``<lab>[.anything].ipynb``
    (papermill's ``forgetting.ci.seed0.ipynb``); those labs are staged with their outputs and marked
    not to be executed again by the build.

    Returns ``dest``; build it with ``jupyter-book build DEST --path-output OUT`` (site in ``OUT/_build/html``).
    """
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")
    if executed and edition != "instructor":
        raise GradingError("executed copies can only stand in for masters in the instructor edition "
                           "(the student edition's labs differ from the masters)")
    runs = {Path(p).name.split(".")[0]: Path(p) for p in executed}
    root = _default_root(root)
    dest = Path(dest) if dest is not None else root / "_build" / "src" / edition
    dest = dest.resolve()
    inside = root in dest.parents
    if dest == root or dest in root.parents or (inside and dest.relative_to(root).parts[0] not in _BUILD_DIRS):
        raise GradingError(f"refusing to stage into {dest}: use a folder under _build/ (it is overwritten)")
    masters = {p.resolve() for p in assignment_masters(root / "labs")}
    wanted: dict[Path, bytes] = {}
    shown: set[str] = set()
    for rel in _book_inputs(root):
        src = root / rel
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            r = f.relative_to(root)
            if _SKIP_DIRS.intersection(r.parts) or f.name in _STAGE_SKIP_FILES:
                continue
            if f.resolve() in masters:
                if f.stem in runs:  # (a lab can be named twice: by its folder and by _toc.yml)
                    nb = instructor_notebook(runs[f.stem], keep_outputs=True)
                    shown.add(f.stem)
                    nb.metadata["mystnb"] = {"execution_mode": "off"}
                else:
                    nb = student_notebook(f) if edition == "student" else instructor_notebook(f)
                wanted[r] = nbformat.writes(nb).encode() + b"\n"
            else:
                wanted[r] = f.read_bytes()
    if set(runs) - shown:
        raise GradingError(f"executed copies without a lab master: {', '.join(sorted(set(runs) - shown))}")
    dest.mkdir(parents=True, exist_ok=True)
    for r, data in wanted.items():
        _write_if_changed(dest / r, data)
    for f in sorted(dest.rglob("*"), reverse=True):  # drop what is no longer a source
        r = f.relative_to(dest)
        if f.is_file() and r not in wanted:
            f.unlink()
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()
    return dest


# --------------------------------------------------------------------------- executing the labs, two at a time

def _execute_one(path: str, timeout: int) -> tuple[str, nbformat.NotebookNode, float, str | None]:
    from jupyter_cache.executors.utils import single_nb_execution

    # the book's numbers are one-thread numbers, however many labs run side by side
    os.environ.update(OMP_NUM_THREADS="1", TLUTILS_WORKERS="1")
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False)
    return path, result.nb, result.time, result.exc_string


def code_digest() -> str:
    """A hash of the installed ``tlutils`` package (code and weights): what the labs import."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(path.relative_to(package.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def execute_labs(src: Path | str, cache: Path | str, workers: int = 2) -> dict[str, float]:
    """Execute a staged book's labs that its jupyter cache lacks, ``workers`` at a time, into that cache.

    Jupyter Book executes notebooks one after another; on a 2-core laptop most labs use one core,
    so running two at a time halves the first build. Each lab is executed and cached the way the
    book's ``execute_notebooks: cache`` mode does it (same kernel, the notebook's folder as working
    directory, the book's timeout, no errors allowed), so ``jupyter-book build`` then finds every
    lab in the cache and executes none. Every lab runs with one thread and no worker processes of
    its own (``TLUTILS_WORKERS=1``): the side-by-side labs then use one core each (more CPU-bound
    processes than cores only slow every one of them down), and a lab's numbers do not depend on
    how many labs needed executing. The cache keys on the cells only, so a cache filled with
    another version of ``tlutils`` (:func:`code_digest`) is emptied first. Returns the seconds each
    executed lab took.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    src, cache = Path(src), Path(cache)
    config = yaml.safe_load((src / "_config.yml").read_text()) or {}
    timeout = int((config.get("execute") or {}).get("timeout", 30))
    stamp, digest = cache / "tlutils.sha256", code_digest()
    if cache.exists() and (not stamp.is_file() or stamp.read_text() != digest):
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)
    store = get_cache(str(cache))
    todo = []
    for path in sorted((src / "labs").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        if (nb.metadata.get("mystnb") or {}).get("execution_mode") == "off":
            continue
        try:
            store.match_cache_notebook(nb)
        except KeyError:
            todo.append(str(path))
    seconds: dict[str, float] = {}
    if not todo:
        return seconds
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
        for path, nb, t, error in pool.map(_execute_one, todo, [timeout] * len(todo)):
            if error is not None:
                raise GradingError(f"executing {path} failed:\n{error[-3000:]}")
            record = store.add_nb_to_project(path)
            store.cache_notebook_bundle(CacheBundleIn(nb, record.uri, data={"execution_seconds": t}),
                                        check_validity=False, overwrite=True)
            seconds[Path(path).stem] = t
    return seconds



# --------------------------------------------------------------------------- committed student notebooks

STUDENT_LABS = Path("student") / "labs"
"""Where the generated student notebooks are committed: the website's launch buttons open them
(``_config.yml``'s ``repository.path_to_book`` is ``student``, so ``labs/x`` becomes ``student/labs/x.ipynb``)."""


def student_notebook_bytes(master: Path | str) -> bytes:
    """The student notebook of ``master`` exactly as it is committed (and staged for the book)."""
    return nbformat.writes(student_notebook(master)).encode() + b"\n"


def write_student_notebooks(root: Path | str | None = None) -> list[Path]:
    """(Re)write ``student/labs/<lab>.ipynb`` for every lab master and delete the ones without a master."""
    root = _default_root(root)
    dest = root / STUDENT_LABS
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for m in assignment_masters(root / "labs"):
        _write_if_changed(dest / m.name, student_notebook_bytes(m))
        written.append(dest / m.name)
    for old in sorted(set(dest.glob("*.ipynb")) - set(written)):
        old.unlink()
    return written


def stale_student_notebooks(root: Path | str | None = None) -> list[str]:
    """Why the committed student notebooks differ from their masters (empty: they are up to date)."""
    root = _default_root(root)
    dest = root / STUDENT_LABS
    masters = assignment_masters(root / "labs")
    problems = [f"{m.stem}: {STUDENT_LABS / m.name} is missing" if not (dest / m.name).is_file() else
                f"{m.stem}: {STUDENT_LABS / m.name} is out of date with labs/{m.name}"
                for m in masters if not (dest / m.name).is_file()
                or (dest / m.name).read_bytes() != student_notebook_bytes(m)]
    problems += [f"{p.stem}: {STUDENT_LABS / p.name} has no master in labs/"
                 for p in sorted(dest.glob("*.ipynb")) if p.stem not in {m.stem for m in masters}]
    return problems

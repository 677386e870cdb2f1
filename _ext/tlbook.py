"""Sphinx helpers of this book (loaded through ``_config.yml``'s ``sphinx.local_extensions``).

Lab figures in chapters. A chapter shows a figure its lab glued (``tlutils.lab.record("fig_x", fig)``)
with one directive; the caption may quote glued numbers::

    ```{lab-figure} ../labs/forgetting.ipynb::fig_curves
    :alt: Target and source accuracy by epoch, naive fine-tune against the fix

    The naive fine-tune falls to {glue:text}`../labs/forgetting.ipynb::collapse_val_acc:.1%`.
    ```

The image is resolved when pages are written, after every notebook was read and executed, from the
glue data the lab wrote in the same build (``jupyter_execute/<lab>.glue.json``): the chapter shows
the very bytes its lab drew. The file is ``_images/<lab>-<key>-<sha256[:12]>.png``, so a test can
check that. A chapter is re-read when its lab's source changes.

Check cells. On the website, the output of an otter ``grader.check("q")`` cell is replaced by a
neutral note: the book runs the student notebook, whose unanswered questions would otherwise show
red "Test case failed" blocks. In a notebook the cell works as usual.

Notebook images without a description get an ``alt`` text naming the section they belong to.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOG = logging.getLogger(__name__)
CHECK_NOTE = "Run this cell in your notebook to check your answer."
_CHECK_CALL = re.compile(r"^\s*grader\.check\(\s*['\"][^'\"]+['\"]\s*\)\s*$")


class pending_lab_image(nodes.General, nodes.Element):
    """A placeholder for a lab's glued figure: ``refdoc`` (the lab's docname) and ``key``."""


class LabFigure(SphinxDirective):
    """``{lab-figure} <lab.ipynb>::<key>`` with a required ``:alt:`` and an optional caption."""

    required_arguments = 1
    has_content = True
    option_spec = {"alt": directives.unchanged_required, "name": directives.unchanged,
                   "width": directives.length_or_percentage_or_unitless}

    def run(self) -> list[nodes.Node]:
        ref = self.arguments[0]
        if "::" not in ref:
            raise self.error(f"lab-figure: write `<lab notebook>::<glue key>`, got {ref!r}")
        path, key = ref.split("::", 1)
        _, filepath = self.env.relfn2path(path, self.env.docname)
        refdoc = self.env.path2doc(filepath)
        if refdoc is None:
            raise self.error(f"lab-figure: {path!r} is not a document of this book")
        if not self.options.get("alt", "").strip():
            raise self.error("lab-figure: give the figure an `:alt:` text (what it shows, in words)")
        self.env.note_dependency(filepath)
        image = pending_lab_image(refdoc=refdoc, key=key, alt=self.options["alt"].strip())
        if "width" in self.options:
            image["width"] = self.options["width"]
        figure = nodes.figure("", image, classes=["lab-figure"])
        self.set_source_info(figure)
        if self.content:
            holder = nodes.Element()
            self.state.nested_parse(self.content, self.content_offset, holder)
            first = holder[0]
            if not isinstance(first, nodes.paragraph):
                raise self.error("lab-figure: the caption must be a paragraph")
            caption = nodes.caption(first.rawsource, "", *first.children)
            caption.source, caption.line = first.source, first.line
            figure += caption
            if len(holder) > 1:
                figure += nodes.legend("", *holder[1:])
        self.add_name(figure)
        return [figure]


def lab_image_name(refdoc: str, key: str, png: bytes) -> str:
    """The file name of a lab figure in ``_images``: lab, key and the first 12 hex of its sha256."""
    return f"{refdoc.replace('/', '-')}-{key}-{hashlib.sha256(png).hexdigest()[:12]}.png"


class ResolveLabImages(SphinxPostTransform):
    """Replace each :class:`pending_lab_image` by the lab's glued PNG (written into ``_images``)."""

    default_priority = 5

    def run(self, **kwargs) -> None:
        folder = Path(self.env.mystnb_config.output_folder)  # myst-nb's jupyter_execute
        outdir = Path(self.app.builder.outdir)
        for node in list(self.document.findall(pending_lab_image)):
            refdoc, key = node["refdoc"], node["key"]
            glue_file = folder.joinpath(*refdoc.split("/")).with_name(refdoc.split("/")[-1] + ".glue.json")
            glued = json.loads(glue_file.read_text()) if glue_file.is_file() else {}
            png_b64 = glued.get(key, {}).get("data", {}).get("image/png")
            if png_b64 is None:
                LOG.warning(f"lab-figure: no figure glued as {key!r} in {refdoc} (is the key recorded?)",
                            location=node, type="tlbook", subtype="lab_figure")
                node.parent.remove(node)
                continue
            png = base64.b64decode(png_b64)
            target = outdir / self.app.builder.imagedir / lab_image_name(refdoc, key, png)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file():
                target.write_bytes(png)
            uri = os.path.relpath(target, (outdir / self.env.docname).parent).replace(os.sep, "/")
            image = nodes.image(uri=uri, alt=node["alt"], candidates={"*": uri})
            if "width" in node:
                image["width"] = node["width"]
            node.replace_self(image)


def _cell_source(cell: nodes.Element) -> str:
    """The code of a myst-nb cell container (its input part only, not the outputs)."""
    return "".join(block.astext() for part in cell.children if isinstance(part, nodes.container)
                   and part.get("nb_element") == "cell_code_source" for block in part.findall(nodes.literal_block))


def _section_title(node: nodes.Node) -> str:
    while node is not None and not isinstance(node, nodes.section):
        node = node.parent
    return node[0].astext() if node is not None and len(node) and isinstance(node[0], nodes.title) else ""


class NotebookCells(SphinxTransform):
    """Neutral notes for otter check cells; an ``alt`` text for notebook output images."""

    default_priority = 700

    def apply(self, **kwargs) -> None:
        for cell in list(self.document.findall(nodes.container)):
            if cell.get("nb_element") != "cell_code":
                continue
            outputs = [c for c in cell.children if isinstance(c, nodes.container)
                       and c.get("nb_element") == "cell_code_output"]
            if _CHECK_CALL.match(_cell_source(cell)):
                for out in outputs:
                    out.children = []
                    out += nodes.paragraph(CHECK_NOTE, CHECK_NOTE)
                    out["classes"].append("tl-check-note")
                if not outputs:
                    note = nodes.container(nb_element="cell_code_output", classes=["cell_output", "tl-check-note"])
                    note += nodes.paragraph(CHECK_NOTE, CHECK_NOTE)
                    cell += note
                continue
            for out in outputs:
                for image in out.findall(nodes.image):
                    if not image.get("alt"):
                        where = _section_title(cell)
                        image["alt"] = f"Figure drawn by the code cell above ({where})" if where else \
                            "Figure drawn by the code cell above"


def setup(app: Sphinx) -> dict:
    app.add_node(pending_lab_image)
    app.add_directive("lab-figure", LabFigure)
    app.add_post_transform(ResolveLabImages)
    app.add_transform(NotebookCells)
    app.add_css_file("tlbook.css")
    app.connect("builder-inited", _add_static)
    # early: a handler that returns a template name ends the event (emit_firstresult)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def _add_static(app: Sphinx) -> None:
    app.config.html_static_path.append(str(Path(__file__).with_name("static")))


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Drop repeated inline scripts: sphinx-thebe and sphinx-togglebutton register theirs twice under
    Jupyter Book (once as ``None``, once as ``""``), and a repeated ``const THEBE_JS_URL`` is a
    JavaScript error on every page."""
    seen, kept = set(), []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"][:] = kept  # in place: later handlers (MathJax) append to this very list

"""Interactive explorers: ipywidgets controls above a figure that they recompute.

An explorer draws its figure once, for the controls' initial values, as an ordinary cell output:
that is what the built book and headless test runs show (with the widgets' state saved in the
notebook). In a live Jupyter or Colab session, changing a control (or pressing *Run* for slow
figures) recomputes the figure and replaces it in place.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import matplotlib.pyplot as plt


def _controls_widgets(controls: Mapping[str, Any]):
    import ipywidgets as widgets
    for name, c in controls.items():
        if not isinstance(c, widgets.ValueWidget):
            raise TypeError(f"control {name!r} must be an ipywidgets value widget (slider, dropdown, ...), got {type(c).__name__}")
    return widgets


class Explorer:
    """Controls (``name -> widget``) and a ``render(**values)`` that returns a matplotlib figure.

    Args:
        render: called with the controls' current values as keyword arguments.
        controls: ipywidgets value widgets, keyed by ``render``'s argument names.
        run_button: recompute only when *Run* is pressed (for figures that train a model);
            otherwise recompute whenever a control changes.
        title: a line shown above the controls.
    """

    def __init__(self, render: Callable[..., Any], controls: Mapping[str, Any], run_button: bool = False,
                 title: str | None = None) -> None:
        widgets = _controls_widgets(controls)
        self.render, self.controls, self.run_button = render, dict(controls), run_button
        self.status = widgets.Label(value="")
        children = ([widgets.HTML(f"<b>{title}</b>")] if title else []) + list(self.controls.values())
        self.button = widgets.Button(description="Run", button_style="primary") if run_button else None
        if self.button is not None:
            self.button.on_click(lambda _: self.update())
            children.append(self.button)
        else:
            for c in self.controls.values():
                c.observe(lambda _: self.update(), names="value")
        # the class marks the explorer's box in saved widget state (the tests find it by it)
        self.box = widgets.VBox(children + [self.status], _dom_classes=("tlutils-explorer",))
        self.handle = None
        self.renders = 0

    def values(self) -> dict[str, Any]:
        """The controls' current values."""
        return {name: c.value for name, c in self.controls.items()}

    def _figure(self):
        fig = self.render(**self.values())
        self.renders += 1
        # close it, or the inline backend would show it a second time at the end of the cell
        plt.close(fig)
        return fig

    def show(self) -> None:
        """Display the controls and the figure for their current values."""
        from IPython.display import display

        from .lab import in_colab
        if in_colab():
            from google.colab import output  # Colab renders ipywidgets 8 only with this manager
            output.enable_custom_widget_manager()
        display(self.box)
        self.handle = display(self._figure(), display_id=True)

    def update(self) -> None:
        """Recompute the figure for the controls' current values and replace the shown one."""
        self.status.value = "running..."
        try:
            fig = self._figure()
            if self.handle is not None:
                self.handle.update(fig)
            self.status.value = ""
        except Exception as e:  # show the problem next to the controls; keep the explorer alive
            self.status.value = f"error: {e}"


def explorer(render: Callable[..., Any], controls: Mapping[str, Any], run_button: bool = False,
             title: str | None = None) -> None:
    """Show an :class:`Explorer`; returns nothing, so the cell shows only the controls and figure."""
    Explorer(render, controls, run_button=run_button, title=title).show()

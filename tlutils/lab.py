"""The notebook contract: profiles, seeding and the device, in one call at the top of a lab.

Every lab starts with a ``parameters`` cell (``profile``, ``seed``) and then::

    device = tlutils.lab.start(profile, seed)
    cfg = tlutils.lab.choose(profile, ci=dict(epochs=3), full=dict(epochs=10))
"""
from __future__ import annotations

import platform
from types import SimpleNamespace
from typing import Any

import torch

from .train import amp_dtype, get_device, seed_everything

PROFILES = ("ci", "full")
"""``ci``: small and fast (the test harness, under 90 s); ``full``: the numbers the book shows."""


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise a ValueError that lists the choices."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use 'ci' (quick, for tests) or 'full' (the book's numbers)")
    return profile


def start(profile: str, seed: int = 0, device: str | None = None, verbose: bool = True) -> torch.device:
    """Validate the profile, seed everything and pick the device (CUDA if there is one, else the CPU;
    ``device="mps"`` for Apple's GPU).

    Same seed, same numbers holds on the CPU; GPU runs of one seed differ slightly (see
    :func:`tlutils.train.seed_everything`). On CUDA, TF32 is turned off so that float32 code
    computes in float32 (the labs' exactness checks rely on it); ``fit`` still trains with
    mixed precision there.
    """
    check_profile(profile)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed_everything(seed)
    dev = get_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if verbose:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
        amp = f"mixed precision ({str(amp_dtype(dev)).replace('torch.', '')}) in fit" if dev.type == "cuda" \
            else "float32"
        print(f"profile={profile} seed={seed} device={dev} ({name}, {amp}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads")
    return dev


def choose(profile: str, *, ci: dict[str, Any], full: dict[str, Any]) -> SimpleNamespace:
    """The settings of ``profile`` as attributes (``cfg.epochs``); both dicts must have the same keys."""
    check_profile(profile)
    if set(ci) != set(full):
        raise ValueError(f"ci and full settings differ in keys: {sorted(set(ci) ^ set(full))}")
    return SimpleNamespace(**(ci if profile == "ci" else full))


def in_colab() -> bool:
    """True when running inside Google Colab."""
    try:
        import google.colab  # noqa: F401
        return True
    except ImportError:
        return False


RECORDED: dict[str, Any] = {}
"""Everything :func:`record` saw in this kernel, for :func:`summary`."""


class Table(dict):
    """A dict that the book shows as an HTML table and the tests read back as a dict.

    Rows are the keys; a row whose value is a dict spreads over columns (the union of
    the rows' keys, in order of appearance). ``fmt`` formats every number (e.g. ``".1%"``), or,
    as a dict, the numbers of the columns it names (``{"source": ".1%"}``; other columns as without);
    a cell holding ``{"mean": m, "std": s}`` (or ``"min"``/``"max"``) shows as ``m ± s``
    (``m (min to max)``), a list as its items. ``text/plain`` stays the dict's repr, so
    ``ast.literal_eval`` gives the values back unformatted.
    """

    def __init__(self, data: dict, fmt: str | dict[str, str] | None = None, caption: str | None = None):
        super().__init__(data)
        self.fmt, self.caption = fmt, caption

    def _cell(self, value: Any, column: Any = None) -> str:
        fmt = self.fmt.get(column) if isinstance(self.fmt, dict) else self.fmt
        if isinstance(value, bool) or value is None:
            return "" if value is None else str(value)
        if isinstance(value, (int, float)):
            if isinstance(value, float) and value != value:
                return "n/a"
            return format(value, fmt) if fmt else (f"{value:.4g}" if isinstance(value, float) else str(value))
        if isinstance(value, dict) and "mean" in value:
            m = self._cell(value["mean"], column)
            if "std" in value:
                return f"{m} ± {self._cell(value['std'], column)}"
            if "min" in value and "max" in value:
                return f"{m} ({self._cell(value['min'], column)} to {self._cell(value['max'], column)})"
            return m
        if isinstance(value, (list, tuple)):
            return ", ".join(self._cell(v, column) for v in value)
        if isinstance(value, dict):
            return "; ".join(f"{k}: {self._cell(v, column)}" for k, v in value.items())
        return str(value)

    def _repr_html_(self) -> str:
        from html import escape

        nested = all(isinstance(v, dict) and "mean" not in v for v in self.values()) and len(self) > 0
        columns: list = []
        if nested:
            for row in self.values():
                columns += [c for c in row if c not in columns]
        head = "".join(f"<th>{escape(str(c))}</th>" for c in columns) if nested else "<th>value</th>"
        rows = []
        for key, row in self.items():
            cells = [(row.get(c), c) for c in columns] if nested else [(row, None)]
            tds = "".join(f"<td>{escape(self._cell(v, c))}</td>" for v, c in cells)
            rows.append(f"<tr><th>{escape(str(key))}</th>{tds}</tr>")
        caption = f"<caption>{escape(self.caption)}</caption>" if self.caption else ""
        return (f'<table class="tlutils-table">{caption}<thead><tr><th></th>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>")


def record(name: str, value: Any, display: bool = False, fmt: str | dict[str, str] | None = None,
           caption: str | None = None) -> None:
    """Record a number (or table) under ``name`` for the book and the tests (``myst_nb.glue``).

    Floats are rounded to 4 decimals so the text in the book stays readable. A dict becomes a
    :class:`Table` (``fmt`` and ``caption`` go to it): shown in the book with the block
    directive ``{glue:} name``, read back by the tests as the dict it is. Without myst-nb
    installed (e.g. in Colab) the value is printed instead. Returns nothing, so a cell ending
    in ``record(...)`` does not show the value (or a figure) a second time.
    """
    if isinstance(value, float):
        value = round(value, 4)
    elif isinstance(value, dict):
        value = Table(value, fmt=fmt if fmt is not None else getattr(value, "fmt", None),
                      caption=caption if caption is not None else getattr(value, "caption", None))
    RECORDED[name] = value
    try:
        from myst_nb import glue
    except ImportError:
        print(f"{name} = {value!r}")
        return
    glue(name, value, display=display)


def as_points(diff: float, above: str = "above", below: str = "below", level: str = "level with") -> str:
    """A signed difference of two accuracies (fractions) in words, to 0.1 point: ``"2.0 points above"``,
    ``"1.5 points below"``, or ``level`` where it rounds to zero. Prose never shows a minus sign."""
    p = round(100 * diff, 1)
    if p == 0:
        return level
    return f"{abs(p):.1f} points {above if p > 0 else below}"


def summary() -> None:
    """Print every recorded number, sorted by name: the lab's results in one place.

    The test harness re-runs each lab and compares this cell's output
    (``# NBVAL_CHECK_OUTPUT``): same seed, same numbers.
    """
    for name in sorted(RECORDED):
        if isinstance(RECORDED[name], (int, float, str, list, tuple, dict)):
            print(f"{name:32s} {RECORDED[name]!r}")

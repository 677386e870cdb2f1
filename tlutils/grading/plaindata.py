"""Plain data across the sandbox's wall: values of a submission as JSON plus a file of tensors.

A submission's variables leave its process as data only, never as pickles: numbers, strings,
lists, tuples, dicts and sets as tagged JSON; tensors and arrays in one ``torch.save`` file that the
grader reads with ``weights_only=True``; ``nn.Module``\\ s and other objects as their class's name and
their attributes, rebuilt on the grader's side only when that class comes from trusted code
(``torch``, ``torchvision``, ``numpy``, ``tlutils``), never from the notebook. Functions are
exported as a reference to a trusted function of the same name, or not at all: a hidden test that
needs to *call* the student's code runs in the submission's process (see the instructor guide).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TRUSTED_PACKAGES = ("torch", "torchvision", "numpy", "tlutils", "collections")
MAX_NODES = 2_000_000      # JSON nodes in one export
MAX_DEPTH = 60

_HOOK_ATTRS = ("hook", "_compiled_call_impl")


class NotExportable(TypeError):
    """A value that cannot leave the sandbox as plain data (the message says why)."""


def _trusted_name(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in TRUSTED_PACKAGES and not module.startswith("tlutils.grading")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}:{getattr(obj, '__qualname__', None)}"


class Encoder:
    """Turns a value into JSON-able data; tensors go to ``self.tensors`` (``key -> tensor``)."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}
        self._memo: dict[int, Any] = {}
        self._keep: list[Any] = []  # keep encoded objects alive so their ids stay unique
        self._nodes = 0

    def encode(self, value: Any, depth: int = 0) -> Any:
        import numpy as np
        import torch

        self._nodes += 1
        if self._nodes > MAX_NODES or depth > MAX_DEPTH:
            raise NotExportable("too large or too deeply nested to export")
        t = type(value)
        if value is None or t in (bool, int, str):
            return value
        if value is Ellipsis:  # an unanswered `x = ...`
            return {"__ellipsis__": 1}
        if t is float:
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            return self.encode(value.item(), depth + 1)
        if id(value) in self._memo:
            return {"__ref__": self._memo[id(value)]}
        if isinstance(value, torch.Tensor):
            key = f"t{len(self.tensors)}"
            self.tensors[key] = value.detach().cpu()
            self._remember(value, key)
            return {"__tensor__": key, "requires_grad": bool(value.requires_grad),
                    "parameter": isinstance(value, torch.nn.Parameter)}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise NotExportable("a numpy array of Python objects")
            key = f"t{len(self.tensors)}"
            self.tensors[key] = torch.from_numpy(value.copy())
            self._remember(value, key)
            return {"__ndarray__": key}
        if t in (list, tuple, set, frozenset):
            tag = {list: "__list__", tuple: "__tuple__", set: "__set__", frozenset: "__set__"}[t]
            return {tag: [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict) and t.__module__ in ("builtins", "collections"):
            return {"__dict__": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, torch.device):
            return {"__device__": str(value)}
        if isinstance(value, torch.dtype):
            return {"__dtype__": str(value).removeprefix("torch.")}
        if isinstance(value, type) or _is_function(value):
            if _trusted_name(getattr(value, "__module__", None)):
                return {"__global__": _qualname(value)}
            raise NotExportable(f"{_describe(value)} defined in the notebook: its code stays in the sandbox")
        if not _trusted_name(t.__module__):
            raise NotExportable(f"an object of class {t.__qualname__}, which is not torch's, numpy's or tlutils' "
                                "(classes defined in the notebook cannot be rebuilt outside it)")
        state = getattr(value, "__dict__", None)
        if not isinstance(state, dict):
            raise NotExportable(f"a {t.__qualname__} object without a __dict__")
        key = f"o{len(self._memo)}"
        self._remember(value, key)
        attrs = {k: v for k, v in state.items() if not any(h in k for h in _HOOK_ATTRS)}
        return {"__object__": _qualname(t), "key": key,
                "attrs": [[k, self.encode(v, depth + 1)] for k, v in attrs.items() if isinstance(k, str)]}

    def _remember(self, value: Any, key: str) -> None:
        self._memo[id(value)] = key
        self._keep.append(value)


def _is_function(value: Any) -> bool:
    import types

    return isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
                              types.LambdaType, types.ModuleType))


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"class {value.__qualname__}"
    return f"function {getattr(value, '__qualname__', type(value).__qualname__)}"


def export_values(env: dict, names: list[str], out_dir: Path | str) -> dict[str, str]:
    """Write ``values.json`` and ``tensors.pt`` for ``names`` of ``env`` into ``out_dir``;
    returns the names that could not be exported and why."""
    import torch

    out_dir = Path(out_dir)
    enc = Encoder()
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name in names:
        if name not in env:
            problems[name] = f"`{name}` is not defined"
            continue
        try:
            values[name] = enc.encode(env[name])
        except NotExportable as e:
            problems[name] = f"`{name}` is {e}"
        except Exception as e:  # a value whose attributes raise
            problems[name] = f"`{name}` could not be exported ({type(e).__name__}: {e})"
    torch.save(enc.tensors, out_dir / "tensors.pt")
    (out_dir / "values.json").write_text(json.dumps({"values": values, "problems": problems}))
    return problems


# --------------------------------------------------------------------------- the grader's side

class Decoder:
    """Rebuilds values from :class:`Encoder`'s data using trusted classes only."""

    def __init__(self, tensors: dict[str, Any]) -> None:
        self.tensors = tensors
        self._objects: dict[str, Any] = {}

    def decode(self, data: Any) -> Any:
        import torch

        if data is None or type(data) in (bool, int, float, str):
            return data
        if not isinstance(data, dict) or not data:
            raise ValueError("malformed export")
        tag = next(iter(data))
        body = data[tag]
        if tag == "__float__":
            return float(body) if body in ("nan", "inf", "-inf") else math.nan
        if tag == "__ellipsis__":
            return Ellipsis
        if tag == "__ref__":
            return self._objects[str(body)]
        if tag in ("__tensor__", "__ndarray__"):
            t = self.tensors[str(body)]
            if not isinstance(t, torch.Tensor):
                raise ValueError("malformed tensor")
            if tag == "__ndarray__":
                out: Any = t.numpy()
            elif data.get("parameter"):
                out = torch.nn.Parameter(t, requires_grad=bool(data.get("requires_grad")))
            else:
                out = t.requires_grad_(bool(data.get("requires_grad"))) if t.is_floating_point() else t
            self._objects[str(body)] = out
            return out
        if tag == "__list__":
            return [self.decode(v) for v in body]
        if tag == "__tuple__":
            return tuple(self.decode(v) for v in body)
        if tag == "__set__":
            return {self.decode(v) for v in body}
        if tag == "__dict__":
            return {self.decode(k): self.decode(v) for k, v in body}
        if tag == "__device__":
            return torch.device("cpu")  # the grader checks on the CPU
        if tag == "__dtype__":
            dt = getattr(torch, str(body), None)
            if not isinstance(dt, torch.dtype):
                raise ValueError(f"unknown dtype {body!r}")
            return dt
        if tag == "__global__":  # a class, or a function of torch.nn.functional or tlutils: nothing that reads files
            obj = _trusted_global(str(body))
            if not isinstance(obj, type) and not str(body).startswith(("torch.nn.functional:", "tlutils.")):
                raise ValueError(f"{body} is not a class or a function of torch.nn.functional or tlutils")
            return obj
        if tag == "__object__":
            cls = _trusted_global(str(body))
            if not isinstance(cls, type):
                raise ValueError(f"{body} is not a class")
            obj = cls.__new__(cls)
            if isinstance(obj, torch.nn.Module):
                torch.nn.Module.__init__(obj)
            self._objects[str(data.get("key"))] = obj
            for k, v in data.get("attrs", []):
                object.__setattr__(obj, str(k), self.decode(v))
            return obj
        raise ValueError(f"unknown tag {tag!r}")


def _trusted_global(ref: str) -> Any:
    """``module:qualname`` of an already imported trusted module (nothing is imported here)."""
    import sys

    module, _, qualname = ref.partition(":")
    if not _trusted_name(module) or module not in sys.modules:
        raise ValueError(f"{ref} is not from torch, torchvision, numpy or tlutils")
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        if part.startswith("<"):
            raise ValueError(f"{ref} is a local name")
        obj = getattr(obj, part)
    return obj


def load_values(folder: Path | str) -> tuple[dict[str, Any], dict[str, str]]:
    """The exported variables (``name -> value``) and the export problems (``name -> reason``)."""
    import torch

    folder = Path(folder)
    data = json.loads((folder / "values.json").read_text())
    tensors = torch.load(folder / "tensors.pt", weights_only=True, map_location="cpu")
    if not isinstance(tensors, dict):
        raise ValueError("malformed tensors file")
    problems = {str(k): str(v)[:300] for k, v in dict(data.get("problems", {})).items()}
    dec = Decoder(tensors)
    env: dict[str, Any] = {}
    for name, value in dict(data.get("values", {})).items():
        try:
            env[str(name)] = dec.decode(value)
        except Exception as e:
            problems[str(name)] = f"`{name}` could not be rebuilt ({type(e).__name__}: {str(e)[:200]})"
    return env, problems

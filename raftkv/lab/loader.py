"""Loading a learner's directory: which exercises it holds, and their functions.

Theory of operation: ``raftkv lab start NAME DIR`` writes ``DIR/NAME.py``;
loading imports each such file under a private module name (so two
directories never share a cached module, and a file edited since is read
again) and takes the function its exercise names. A file that does not
import, or lacks the function, is reported as a :class:`LabDirError`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import pathlib
import sys
from collections.abc import Callable

from raftkv.raft.rules import DEFAULT_RULES, Rules

from .exercises import EXERCISES, Exercise

_counter = itertools.count()


class LabDirError(Exception):
    pass


def present(lab_dir: str | pathlib.Path) -> list[Exercise]:
    """The exercises started in ``lab_dir``, in the teaching order."""
    root = pathlib.Path(lab_dir)
    if not root.is_dir():
        raise LabDirError(f"{root} is not a directory; start an exercise there first: raftkv lab start vote {root}")
    return [e for e in EXERCISES if (root / f"{e.name}.py").is_file()]


def load_function(lab_dir: str | pathlib.Path, exercise: Exercise) -> Callable:
    path = pathlib.Path(lab_dir) / f"{exercise.name}.py"
    name = f"raftkv_lab_{exercise.name}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LabDirError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise LabDirError(f"{path} does not import: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(name, None)
    fn = getattr(module, exercise.function, None)
    if not callable(fn):
        raise LabDirError(f"{path} has no function {exercise.function}(req)")
    return fn


def load_rules(lab_dir: str | pathlib.Path) -> tuple[Rules, list[Exercise]]:
    """The core's rules with every function found in ``lab_dir`` in place of its own."""
    found = present(lab_dir)
    swapped = {e.function: load_function(lab_dir, e) for e in found}
    return dataclasses.replace(DEFAULT_RULES, **swapped), found

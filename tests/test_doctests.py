"""Every ``>>>`` example in tl_lab's docstrings runs as a doctest (STYLE 10: docstrings carry runnable examples).

Each module's examples run in that module's namespace plus ``torch``, ``np``, ``tl_lab`` and tl_lab's public names
(``tl_lab.__all__``: ``fit``, ``load_dataset``, ``FreezePlan`` ...), as after ``import tl_lab``; other names an
example imports itself. Examples that train for long or print machine-dependent numbers carry ``# doctest: +SKIP`` and say what
they measured in a comment; everything else must print exactly what the docstring shows (``...`` matches the
digits that vary). New modules are found by walking the package, so a new example is tested without editing this
file.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tl_lab

pytestmark = pytest.mark.usefixtures("one_thread")

# jupyter_server needs a running server's imports; its module has no examples
_SKIP_MODULES = {"tl_lab.app.jupyter_server", "tl_lab.app.jupyter_server.handlers"}
# modules whose examples load a backbone and run forward passes: a few seconds each
_SLOW = {"tl_lab.experiments.data_efficiency", "tl_lab.inside.attribution", "tl_lab.inside.probes",
         "tl_lab.inside.old_task", "tl_lab.training.loop", "tl_lab.data.datasets", "tl_lab.backbones.cost",
         "tl_lab.plots.export", "tl_lab.widgets.few_shot", "tl_lab.backbones.cut", "tl_lab.inside.prototypes"}


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(tl_lab.__path__, "tl_lab.")]
    return ["tl_lab", *sorted(n for n in names if n not in _SKIP_MODULES)]


def _public_names() -> dict:
    import numpy as np
    import torch

    names = {name: getattr(tl_lab, name) for name in tl_lab.__all__}
    return {**names, "tl_lab": tl_lab, "torch": torch, "np": np}


def _params():
    return [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in _modules()]


@pytest.mark.parametrize("module_name", _params())
def test_docstring_examples_run(module_name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # examples that write files (run folders, HTML) write here
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    names = {**_public_names(), **vars(module)}  # the module's own names come first
    tests = [t for t in finder.find(module, globs=names) if t.examples]
    if not tests:
        pytest.skip("no examples")
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_the_examples_are_found():
    """The finder sees the package's examples (a walk that found nothing would pass every case above)."""
    counted = 0
    for name in _modules():
        module = importlib.import_module(name)
        counted += sum(len(t.examples) for t in doctest.DocTestFinder(exclude_empty=True).find(module))
    assert counted > 300

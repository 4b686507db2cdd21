"""Reference results: the numbers a lesson's prose quotes as "our run", bound to a recorded full-size run.

``tl-lab bench --only-lessons --references`` runs each lesson at full size and writes
``notebooks/references/lesson_results.json``: per lesson, the ``RESULT`` values it printed, when, where and on how
many threads it ran, and a fingerprint of the code it ran (:func:`fingerprint`).

**Binding a number.** In a lesson's Markdown, a number quoted from our run names its result in an HTML comment right
after it, which JupyterLab, nbconvert and MyST-NB render as nothing: ``0.459<!--r:mt_shape_pretrained_single-->``.
The number must equal the recorded value rounded to the digits it is written with (``0.46`` binds 0.459 too);
``<!--r:name %-->`` reads the value as a percentage (``43%<!--r:acc %-->``). A three-decimal number that is not from
our run (a paper's figure, another lesson's result, a formula) says so: ``0.761<!--not ours: Kornblith et al.-->``.
:func:`check_prose` lists every number that differs from the reference and every three-decimal number left unbound.

**The rule for "older".** A lesson's reference is *stale* when the code it ran has changed since it was recorded:
its notebook's code cells (compared as code, so a reworded comment leaves it current); the source of any tl_lab
function or method the recorded run called (compared without docstrings and comments); or the module-level
statements (constants such as a recipe's epochs) of a module holding one of those functions. A function the lesson
never called may change freely, and so may the display layers and the checked questions (``tl_lab.widgets``,
``tl_lab.plots``, ``tl_lab.exercises``): they show or read a lesson's numbers but compute none (the layer rule keeps
the maths below them, and the library functions they call are fingerprinted). Calls are recorded with
:mod:`cProfile` in the kernel's main thread, where lessons run their experiments.
A stale reference is re-recorded with the same command; :func:`stale` says what changed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tl_lab
from tl_lab.app.lessons import lessons_source

PACKAGE = Path(tl_lab.__file__).resolve().parent
REFERENCE_FILE = "references/lesson_results.json"  # beside the lessons
VERSION = 1
# Code that shows or reads a lesson's results but never computes one: the display layers (widgets and plots hold no
# maths by the layer rule; the library functions they call are fingerprinted) and the checked questions.
NOT_FINGERPRINTED = ("tl_lab.exercises", "tl_lab.widgets", "tl_lab.plots")
RULE = ("A lesson's reference is stale when its code cells (as code, comments left out), the source (without "
        "docstrings) of a tl_lab function or method the recorded run called, or the module-level statements of a "
        "module holding one of them, differ from today's code; the display layers and checked questions "
        "(tl_lab.widgets, tl_lab.plots, tl_lab.exercises) compute no number and are left out. Re-record it with: "
        "tl-lab bench --only-lessons --references NN")

# Code the lesson kernel runs before its first cell and after its last (bench_notebook(trace=True)).
TRACE_START = "import cProfile as _tl_cprofile\n_tl_profile = _tl_cprofile.Profile()\n_tl_profile.enable()"
TRACE_END = ("_tl_profile.disable()\nimport json as _tl_json, pstats as _tl_pstats\n"
             "print('TL_LAB_CALLS', _tl_json.dumps(sorted({(f, n, fn) for f, n, fn in "
             "_tl_pstats.Stats(_tl_profile).stats if f.endswith('.py')})))")

_BOUND = re.compile(r"(?P<num>[-+\u2212]?\d+(?:\.\d+)?)(?P<pct>%?)\s*<!--\s*r:(?P<name>[A-Za-z_]\w*)(?P<as_pct>\s+%)?"
                    r"\s*-->")
_NOT_OURS = re.compile(r"\d\.\d{3}\s*<!--\s*not ours\b[^>]*-->")
_THREE = re.compile(r"(?<![\w.])[-+\u2212]?\d\.\d{3}(?![\d])")


def reference_path(source: str | Path | None = None) -> Path:
    """``notebooks/references/lesson_results.json`` (or beside the lessons in ``source``)."""
    return Path(source or lessons_source()) / REFERENCE_FILE


def load_references(path: str | Path | None = None) -> dict:
    """The reference file's lessons (``{lesson stem: entry}``); empty when none was recorded yet."""
    p = Path(path) if path is not None else reference_path()
    if not p.exists():
        return {}
    data = json.loads(p.read_text())
    if data.get("version") != VERSION:
        raise ValueError(f"{p}: reference format {data.get('version')!r}, this tl_lab reads {VERSION}; "
                         "re-record it with tl-lab bench --only-lessons --references")
    return data["lessons"]


# ------------------------------------------------------------------------------------------------ fingerprints


def _strip_docstring(node: ast.AST) -> ast.AST:
    body = getattr(node, "body", None)
    if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
        node.body = body[1:] or [ast.Pass()]
    for child in ast.iter_child_nodes(node):
        _strip_docstring(child)
    return node


def _digest(node: ast.AST | list[ast.AST]) -> str:
    nodes = node if isinstance(node, list) else [node]
    text = "\n".join(ast.dump(_strip_docstring(n), include_attributes=False) for n in nodes)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _units(tree: ast.Module) -> dict[str, tuple[int, int, ast.AST | list[ast.AST]]]:
    """Named pieces of a module: each top-level function, each method (``Class.method``), each class's own
    statements (``Class.<class>``) and the module's own statements (``<module>``), with their line spans."""
    units: dict[str, tuple[int, int, Any]] = {}
    module_level = [n for n in tree.body if not isinstance(n, _DEFS)]
    units["<module>"] = (0, 0, module_level)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            units[node.name] = (first, node.end_lineno or node.lineno, node)
        elif isinstance(node, ast.ClassDef):
            own = [n for n in node.body if not isinstance(n, _DEFS)]
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            units[f"{node.name}.<class>"] = (first, node.end_lineno or node.lineno, [*node.decorator_list, *node.bases,
                                                                                       *own])
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    start = min([item.lineno, *(d.lineno for d in item.decorator_list)])
                    units[f"{node.name}.{item.name}"] = (start, item.end_lineno or item.lineno, item)
    return units


def _unit_at(units: Mapping[str, tuple[int, int, Any]], line: int) -> str:
    """The innermost named piece holding ``line`` (a lambda or comprehension belongs to its function)."""
    best, span = "<module>", None
    for name, (start, end, _) in units.items():
        if start <= line <= end and (span is None or end - start < span):
            best, span = name, end - start
    return best


def _module_name(path: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(PACKAGE.parent)
    except ValueError:
        return None
    return ".".join(rel.with_suffix("").parts)


def _module_file(module: str) -> Path:
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def fingerprint(calls: Iterable[Sequence[Any]]) -> dict[str, str]:
    """``{"module:piece": digest}`` for the tl_lab code behind ``calls`` (cProfile's ``(file, line, function)``):
    the function or method each call ran in, and the module-level statements of each module involved."""
    wanted: dict[str, set[str]] = {}
    for file, line, _ in calls:
        module = _module_name(Path(file))
        if module is None or not module.startswith("tl_lab") or module.startswith(NOT_FINGERPRINTED):
            continue
        wanted.setdefault(module, set()).add(str(line))
    out: dict[str, str] = {}
    for module, lines in sorted(wanted.items()):
        units = _units(ast.parse(_module_file(module).read_text()))
        names = {_unit_at(units, int(line)) for line in lines} | {"<module>"}
        names |= {f"{n.split('.')[0]}.<class>" for n in names if "." in n}
        for name in sorted(names):
            out[f"{module}:{name}"] = _digest(units[name][2])
    return out


def source_digests(source: str) -> dict[str, str]:
    r"""``{piece: digest}`` for every named piece of a module's source (see :func:`fingerprint`).

    >>> a = source_digests('X = 1\ndef f():\n    "Doc."\n    return X  # why\n')
    >>> b = source_digests('X = 1\ndef f():\n    "Reworded."\n    return X\n')
    >>> a == b, a["f"] == source_digests('X = 1\ndef f():\n    return X + 1\n')["f"]
    (True, False)
    """
    return {name: _digest(node) for name, (_, _, node) in _units(ast.parse(source)).items()}


def current_digest(key: str) -> str | None:
    """The digest of ``module:piece`` in today's code (None: the module or the piece is gone)."""
    module, name = key.split(":", 1)
    path = _module_file(module)
    return _file_digests(str(path), path.stat().st_mtime_ns).get(name) if path.exists() else None


@functools.lru_cache(maxsize=512)
def _file_digests(path: str, mtime_ns: int) -> dict[str, str]:
    """A module file's digests, parsed once per version of the file (``mtime_ns`` is part of the key)."""
    return source_digests(Path(path).read_text())


def _cell_code(source: str) -> str:
    """A code cell as Python sees it (its syntax tree: comments and layout left out); its text if it does not parse
    (an IPython magic)."""
    try:
        return ast.dump(ast.parse(source), include_attributes=False)
    except SyntaxError:
        return source


def notebook_digest(nb: Any) -> str:
    """The lesson's code cells, in order, compared as code: a changed statement, name or string makes the reference
    stale; a reworded comment (an answer cell repeating its question, say) does not.

    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> a = new_notebook(cells=[new_code_cell("x = 1  # one")])
    >>> b = new_notebook(cells=[new_code_cell("# the same\\nx = 1")])
    >>> c = new_notebook(cells=[new_code_cell("x = 2  # one")])
    >>> notebook_digest(a) == notebook_digest(b), notebook_digest(a) == notebook_digest(c)
    (True, False)
    """
    text = "\n\x00\n".join(_cell_code(c.source) for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stale(entry: Mapping[str, Any], nb: Any) -> list[str]:
    """What changed since ``entry`` was recorded (empty: the reference is current). See the module's rule."""
    changed = []
    if entry.get("notebook") != notebook_digest(nb):
        changed.append("the lesson's code cells")
    for key, digest in sorted(entry.get("code", {}).items()):
        if key.startswith(NOT_FINGERPRINTED):
            continue
        now = current_digest(key)
        if now != digest:
            changed.append(f"{key} ({'removed' if now is None else 'changed'})")
    return changed


# ------------------------------------------------------------------------------------------------ the prose


def bound_numbers(nb: Any) -> list[dict]:
    """Every number in the lesson's Markdown bound to a result: ``{"cell", "text", "name", "value", "digits",
    "percent"}`` in reading order."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for m in _BOUND.finditer(cell.source):
            text = m.group("num").replace("\u2212", "-")
            digits = len(text.split(".")[1]) if "." in text else 0
            found.append({"cell": index, "text": m.group(0), "name": m.group("name"), "value": float(text),
                          "digits": digits, "percent": bool(m.group("pct") or m.group("as_pct"))})
    return found


def unbound_numbers(nb: Any) -> list[tuple[int, str]]:
    """Three-decimal numbers in the Markdown that are neither bound to a result nor marked ``not ours``."""
    out = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = _NOT_OURS.sub("", _BOUND.sub("", cell.source))
        text = re.sub(r"`[^`]*`", "", text)  # code in backticks is not a quoted number
        out += [(index, m.group(0)) for m in _THREE.finditer(text)]
    return out


def check_prose(nb: Any, results: Mapping[str, float]) -> list[str]:
    """Every bound number that differs from ``results`` (or names a result the run never printed), and every
    three-decimal number left unbound, as messages naming the cell."""
    problems = []
    for b in bound_numbers(nb):
        if b["name"] not in results:
            problems.append(f"cell {b['cell']}: {b['text']!r} names {b['name']!r}, which the recorded run never "
                            f"printed (RESULT lines: {', '.join(sorted(results)) or 'none'})")
            continue
        value = results[b["name"]] * (100 if b["percent"] else 1)
        if round(value, b["digits"]) != round(b["value"], b["digits"]):
            problems.append(f"cell {b['cell']}: the text says {b['value']:.{b['digits']}f} for {b['name']}; the "
                            f"recorded run measured {value:.{max(b['digits'], 3)}f}")
    problems += [f"cell {i}: {num} is a three-decimal number bound to no result; write it as "
                 f"{num}<!--r:NAME--> (a RESULT of the run) or {num}<!--not ours: where it comes from-->"
                 for i, num in unbound_numbers(nb)]
    return problems


# ------------------------------------------------------------------------------------------------ recording


def calls_from_output(text: str) -> list[list[Any]]:
    """The ``TL_LAB_CALLS`` line :data:`TRACE_END` prints, as ``[file, line, function]`` triples."""
    m = re.search(r"TL_LAB_CALLS (\[.*\])", text)
    return json.loads(m.group(1)) if m else []


def reference_entry(record: Mapping[str, Any], nb: Any) -> dict:
    """The reference file's entry for one traced full-size bench record (see :func:`record_references`)."""
    return {
        "results": record["results"],
        "recorded": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": record["seconds"],
        "threads": record.get("torch_threads"),
        "tl_lab": getattr(tl_lab, "__version__", "dev"),
        "notebook": notebook_digest(nb),
        "code": fingerprint(record.get("calls", [])),
    }


def record_references(records: Sequence[Mapping[str, Any]], notebooks: Mapping[str, Any],
                      path: str | Path | None = None) -> Path:
    """Write each traced, full-size, error-free record's entry into the reference file, keeping the other lessons'
    entries. ``notebooks``: lesson stem -> the notebook as it ran (its code cells are fingerprinted)."""
    p = Path(path) if path is not None else reference_path()
    data = {"version": VERSION, "rule": RULE, "lessons": load_references(p)}
    for rec in records:
        stem = Path(rec["lesson"]).stem
        if rec.get("fast"):
            raise ValueError(f"{stem}: references are full-size runs; run without --fast")
        if rec.get("error"):
            raise ValueError(f"{stem}: the run failed ({rec['error']}); fix it before recording its numbers")
        if not rec.get("calls"):
            raise ValueError(f"{stem}: the run recorded no calls; run it with trace=True (--references)")
        data["lessons"][stem] = reference_entry(rec, notebooks[stem])
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(p)
    return p

"""Quoted numbers bound to a recorded run (tl_lab.app.references): the prose check, the fingerprint of the code a
lesson ran and its staleness rule, recording through the lessons bench, and the lessons' own reference file."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import nbformat
import pytest

from tl_lab.app import references as refs
from tl_lab.app.references import (bound_numbers, check_prose, fingerprint, load_references, notebook_digest,
                                   record_references, source_digests, stale, unbound_numbers)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Lessons whose full-size run has not been recorded yet (their prose is not bound yet). Recording one
# (tl-lab bench --only-lessons --references --lesson NN) must remove it from this set, or the test below fails.
NOT_YET_RECORDED: set[str] = set()


def _md(*cells: str):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells])


# ---- the prose --------------------------------------------------------------------------------------------------


def test_bound_numbers_are_read_with_their_digits_and_percent():
    nb = _md("Frozen head 0.433<!--r:head--> and 43%<!--r:head--> or 43.3<!-- r:head % -->, scratch \u22120.05<!--r:d-->.")
    found = [(b["name"], b["value"], b["digits"], b["percent"]) for b in bound_numbers(nb)]
    assert found == [("head", 0.433, 3, False), ("head", 43.0, 0, True), ("head", 43.3, 1, True),
                     ("d", -0.05, 2, False)]


def test_check_prose_accepts_the_recorded_numbers_at_the_digits_written():
    nb = _md("Frozen head 0.433<!--r:head-->, about 0.43<!--r:head--> or 43%<!--r:head-->; a paper's "
             "0.761<!--not ours: Kornblith et al.-->; `lr=0.003` is code.")
    assert check_prose(nb, {"head": 0.4333}) == []


@pytest.mark.parametrize(("text", "message"), [
    ("0.434<!--r:head-->", "cell 0: the text says 0.434 for head; the recorded run measured 0.433"),
    ("0.43<!--r:scratch-->", "cell 0: '0.43<!--r:scratch-->' names 'scratch', which the recorded run never printed"),
    ("44%<!--r:head-->", "cell 0: the text says 44 for head; the recorded run measured 43.330"),
    ("-0.433<!--r:head-->", "cell 0: the text says -0.433 for head; the recorded run measured 0.433"),
    ("our run reached 0.433 here", "cell 0: 0.433 is a three-decimal number bound to no result"),
])  # fmt: skip
def test_check_prose_names_each_wrong_or_unbound_number(text, message):
    problems = check_prose(_md(text), {"head": 0.4333})
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_unbound_numbers_ignore_bound_marked_and_code_numbers():
    nb = _md("0.500<!--r:a--> 0.761<!--not ours: paper--> `0.125` 1.5 0.25 and 0.975 unbound", "x = 2.000 too")
    assert unbound_numbers(nb) == [(0, "0.975"), (1, "2.000")]


# ---- the code a lesson ran, and the rule for "older" ------------------------------------------------------------


def test_source_digests_ignore_docstrings_and_comments_but_not_code_or_constants():
    base = 'EPOCHS = 20\n\ndef f(x):\n    """Doc."""\n    return x * EPOCHS  # comment\n\nclass C:\n    k = 1\n' \
           '    def m(self):\n        return self.k\n'
    same = base.replace('"""Doc."""', '"""Reworded doc."""').replace("# comment", "# other")
    assert source_digests(same) == source_digests(base)
    body = source_digests(base.replace("x * EPOCHS", "x + EPOCHS"))
    const = source_digests(base.replace("EPOCHS = 20", "EPOCHS = 6"))
    cls = source_digests(base.replace("k = 1", "k = 2"))
    d = source_digests(base)
    assert set(d) == {"<module>", "f", "C.<class>", "C.m"}
    assert [k for k in d if body[k] != d[k]] == ["f"]
    assert [k for k in d if const[k] != d[k]] == ["<module>"]
    assert [k for k in d if cls[k] != d[k]] == ["C.<class>"]


def test_fingerprint_maps_calls_to_their_functions_methods_and_modules():
    from tl_lab.training import recipes, run

    lines, start = inspect.getsourcelines(recipes.recipe_epochs)
    method_line = inspect.getsourcelines(run.Run.evaluate)[1]
    calls = [(recipes.__file__, start, "recipe_epochs"),
             (recipes.__file__, start + len(lines) - 1, "<genexpr>"),  # a line inside it: the same function
             (run.__file__, method_line, "evaluate"),
             ("/usr/lib/python3/dist-packages/other.py", 3, "elsewhere")]
    fp = fingerprint(calls)
    assert sorted(fp) == ["tl_lab.training.recipes:<module>", "tl_lab.training.recipes:recipe_epochs",
                          "tl_lab.training.run:<module>", "tl_lab.training.run:Run.<class>",
                          "tl_lab.training.run:Run.evaluate"]
    assert all(refs.current_digest(k) == v for k, v in fp.items())


def test_checked_questions_are_not_fingerprinted_they_only_read_results():
    from tl_lab.exercises import lesson12
    from tl_lab.plots import style
    from tl_lab.widgets import light_figure

    line = inspect.getsourcelines(lesson12.questions)[1]
    assert fingerprint([(lesson12.__file__, line, "questions")]) == {}
    # nor are the display layers: a widget's loader script or a figure's label placement computes no result
    assert fingerprint([(light_figure.__file__, inspect.getsourcelines(light_figure.plotly_widget_bundle)[1], "f"),
                        (style.__file__, inspect.getsourcelines(style.place_labels)[1], "place_labels")]) == {}
    nb = nbformat.v4.new_notebook()
    assert stale({"notebook": notebook_digest(nb), "code": {"tl_lab.exercises.lesson12:questions": "0" * 16}}, nb) == []


def test_stale_names_what_changed():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    entry = {"notebook": notebook_digest(nb), "code": {"tl_lab.training.recipes:recipe_epochs": "0" * 16,
                                                       "tl_lab.training.recipes:gone_function": "1" * 16}}
    assert stale(entry, nb) == ["tl_lab.training.recipes:gone_function (removed)",
                                "tl_lab.training.recipes:recipe_epochs (changed)"]
    nb.cells[0].source = "x = 2"
    current = {"notebook": notebook_digest(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])),
               "code": fingerprint([(refs.PACKAGE / "training" / "recipes.py", 1, "<module>")])}
    assert stale(current, nb) == ["the lesson's code cells"]


def test_record_references_refuses_fast_failed_and_untraced_runs(tmp_path):
    nb = nbformat.v4.new_notebook()
    base = {"lesson": "99_x.ipynb", "results": {"a": 0.5}, "seconds": 1.0, "calls": [["f.py", 1, "f"]]}
    for change, message in [({"fast": True}, "references are full-size runs"),
                            ({"error": "ValueError: x"}, "the run failed (ValueError: x)"),
                            ({"calls": []}, "the run recorded no calls")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            record_references([{**base, **change}], {"99_x": nb}, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_a_traced_bench_run_records_the_calls_and_its_reference_goes_stale_when_a_cell_changes(tmp_path):
    """The real path: a lesson run in a kernel with tracing, its entry written, then held against its text."""
    from tl_lab.app.lessons_bench import bench_notebook

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("We measured 2<!--r:epochs--> epochs and a fraction of 0.250<!--r:quarter-->."),
        nbformat.v4.new_code_cell("from tl_lab.training.recipes import recipe_epochs\nfrom tl_lab import lesson\n"
                                  "lesson.result('epochs', recipe_epochs('fine_tune', 2, False))\n"
                                  "lesson.result('quarter', 0.25)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = tmp_path / "98_tiny.ipynb"
    nbformat.write(nb, path)
    rec = bench_notebook(path, trace=True, threads=1)
    assert rec["error"] is None and rec["results"] == {"epochs": 2.0, "quarter": 0.25}
    written = record_references([rec], {"98_tiny": nb}, tmp_path / "refs.json")
    entry = load_references(written)["98_tiny"]
    assert "tl_lab.training.recipes:recipe_epochs" in entry["code"] and entry["threads"] == 1
    assert json.loads(written.read_text())["rule"] == refs.RULE
    assert check_prose(nb, entry["results"]) == [] and stale(entry, nb) == []
    nb.cells[0].source = nb.cells[0].source.replace("0.250", "0.300")
    assert check_prose(nb, entry["results"]) == ["cell 0: the text says 0.300 for quarter; the recorded run "
                                                 "measured 0.250"]
    nb.cells[1].source += "\n# a comment changes no number"
    assert stale(entry, nb) == []
    nb.cells[1].source += "\nx = 1"
    assert stale(entry, nb) == ["the lesson's code cells"]


# ---- the lessons -----------------------------------------------------------------------------------------------


def test_recorded_lessons_are_exactly_those_not_listed_as_waiting():
    recorded = set(load_references())
    assert recorded.isdisjoint(NOT_YET_RECORDED), f"recorded now, remove from NOT_YET_RECORDED: {recorded & NOT_YET_RECORDED}"
    assert recorded | NOT_YET_RECORDED == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem not in NOT_YET_RECORDED],
                         ids=lambda p: p.stem)
def test_a_lessons_quoted_numbers_match_its_current_recorded_run(path):
    nb = nbformat.read(path, as_version=4)
    entry = load_references()[path.stem]
    changed = stale(entry, nb)
    assert not changed, (f"{path.stem}: its reference ({entry['recorded']}) is older than the code it ran; changed: "
                         + "; ".join(changed) + f". Re-record: tl-lab bench --only-lessons --references "
                         f"--lesson {path.stem[:2]}")
    problems = check_prose(nb, entry["results"])
    assert not problems, f"{path.stem}:\n  " + "\n  ".join(problems)

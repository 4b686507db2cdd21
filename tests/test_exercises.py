"""Checked exercises: each checker accepts its right answer and rejects the plausible mistakes with their own message
(STYLE 19: a checker is tested against wrong answers)."""

from __future__ import annotations

import json

import pytest

from tl_lab import exercises
from tl_lab.exercises import progress
from tl_lab.exercises.questions import Choice, Code, Number, Predict, beyond_noise, binomial_se


# a run of lesson 00 / 03 as its RESULT lines reported them
RUN00 = {"clipart_raw_pixels": 0.307, "clipart_frozen_head": 0.614, "clipart_scratch": 0.294}
RUN03 = {"sweep_head_only": 0.595, "sweep_fine_tune_all": 0.621, "trainable_fraction_from_stage6": 0.7364}


def test_noise_formulas():
    assert binomial_se(0.6, 150) == pytest.approx((0.6 * 0.4 / 150) ** 0.5)
    assert beyond_noise(0.60, 0.50, 153) is False  # 2 * sqrt(.6*.4/153 + .5*.5/153) = 0.113
    assert beyond_noise(0.62, 0.50, 153) is True
    with pytest.raises(ValueError, match="n must be positive"):
        binomial_se(0.5, 0)


def test_predict_waits_for_a_prediction_then_for_the_run_then_compares_with_what_was_measured():
    q = exercises.lesson("00").q1
    assert q.check(results=RUN00).correct is None and "Make a prediction first" in q.check(results=RUN00).message
    with pytest.raises(ValueError, match="predict one of"):
        q.predict("pretrained")
    q.predict("from scratch")
    waiting = q.check(results={"clipart_raw_pixels": 0.3})
    assert waiting.correct is None and "clipart_frozen_head" in waiting.message
    wrong = q.check(results=RUN00)
    assert wrong.correct is False
    assert "Your run disagrees with 'from scratch'" in wrong.message
    assert "clipart_frozen_head = 0.614" in wrong.message and "beyond the noise" in wrong.message
    assert "Best: 'pretrained (frozen head)' by +0.307 over 'raw pixels'" in wrong.message
    q.predict("pretrained (frozen head)")
    right = q.check(results=RUN00)
    assert right.correct is True and right.message.startswith("Correct: your run measured")
    # a close race is reported as within noise, whichever option won
    close = q.check(results={**RUN00, "clipart_raw_pixels": 0.60})
    assert close.correct is True and "within the noise" in close.message


def test_predict_reads_the_lessons_own_results_and_notes_a_late_prediction():
    from tl_lab import lesson
    from tl_lab.exercises import measured

    measured.clear()
    q = exercises.lesson("03").q1
    q.predict("head only")
    assert q.check().correct is None  # nothing measured in this kernel yet
    for name, value in RUN03.items():
        lesson.result(name, value)
    result = q.check()
    assert result.correct is False and "'fine-tune all'" in result.message and "within the noise" in result.message
    q.predict("fine-tune all")  # after the run: allowed, and said
    assert "You predicted after this run had already measured it" in q.check().message
    measured.clear()


def test_number_accepts_the_measured_value_and_names_each_plausible_mistake():
    q = exercises.lesson("00").q2
    assert q.check(0.307, results=RUN00).correct is True
    assert q.check(0.3074, results=RUN00).correct is True  # within reading precision
    cases = {
        -0.307: "raw pixels minus pretrained",
        0.320: "compared with the from-scratch network",
        0.614: "the pretrained accuracy itself",
    }
    for answer, message in cases.items():
        r = q.check(answer, results=RUN00)
        assert r.correct is False and message in r.message, (answer, r.message)
    other = q.check(0.5, results=RUN00)
    assert other.correct is False and "not within 0.002" in other.message
    assert q.check("a lot", results=RUN00).message.startswith("Answer with a number")
    assert q.check(results=RUN00).correct is None


def test_number_fraction_mistakes():
    q = exercises.lesson("03").q3
    assert q.check(0.736, results=RUN03).correct is True
    assert "frozen fraction" in q.check(0.264, results=RUN03).message
    assert "not a percentage" in q.check(73.64, results=RUN03).message
    assert q.check(0.5, results=RUN03).correct is False
    assert q.check(0.7, results={}).correct is None  # not run yet


def test_code_question_checks_a_freeze_plan_against_the_reference():
    import tl_lab

    q = exercises.lesson("03").q2
    assert q.check(tl_lab.FreezePlan("stage6", bn="eval")).correct is True
    wrong = [
        (tl_lab.FreezePlan("stage5", bn="eval"), "also trains stage5"),  # off by one stage
        (tl_lab.FreezePlan("stage7", bn="eval"), "leaves stage6 frozen"),
        (tl_lab.FreezePlan("stage6"), "bn='frozen'"),  # statistics of trainable stages still update
        (tl_lab.FreezePlan("stage6", bn="train"), "bn='train'"),
        (tl_lab.FreezePlan(None, bn="eval"), "freezes nothing"),  # a plan that freezes nothing
        (tl_lab.FreezePlan("head", bn="eval"), "trains only the head"),
    ]
    for plan, message in wrong:
        r = q.check(plan)
        assert r.correct is False and message in r.message, (plan, r.message)
    assert "Pass a tl_lab.FreezePlan" in q.check("stage6").message
    assert q.check().correct is None


def test_code_question_reports_an_answer_that_raises():
    q = Code("q9", "a function", verify=lambda f: None if f(2) == 4 else "f(2) should be 4")
    assert q.check(lambda x: x * x).correct is True
    assert q.check(lambda x: x + 3).message == "f(2) should be 4"
    assert q.check(lambda x: 1 / 0).message == "Your answer raised ZeroDivisionError: division by zero"


def test_every_choice_question_has_exactly_one_correct_option_and_says_why_the_others_are_wrong():
    for lesson_id in exercises.totals():
        for q in exercises.lesson(lesson_id):
            if q.kind != "choice":
                continue
            results = [q.check(i) for i in range(len(q.options))]
            assert [r.correct for r in results].count(True) == 1, (lesson_id, q.id)
            for i, r in enumerate(results):
                if not r.correct:
                    assert r.message.startswith("Not quite: ") and q.why_not.get(i), (lesson_id, q.id, i)
            assert q.check(len(q.options)).correct is False
            assert q.check(q.options[q.answer]).correct is True  # the option's text works too


def test_choice_refuses_a_malformed_question():
    with pytest.raises(ValueError, match="answer 2 is not an option index"):
        Choice("q1", "?", options=("a", "b"), answer=2)
    with pytest.raises(ValueError, match="two or more distinct options"):
        Choice("q1", "?", options=("a", "a"), answer=0)
    with pytest.raises(ValueError, match="two or more distinct options"):
        Predict("q1", "?", choices=("a",))


def test_hints_are_tiered_and_solutions_exist():
    q = exercises.lesson("03").q2
    assert q.hint(1) != q.hint(2) and q.hint(5) == q.hint(2)
    assert "FreezePlan('stage6', bn='eval')" in q.solution()
    with pytest.raises(ValueError, match="hint levels start at 1"):
        q.hint(0)
    assert Number("q", "?").hint() == "No hint for this one: try it, then look at the solution."


def test_catalogue_lists_every_question_with_its_kind():
    rows = exercises.catalogue()
    assert {(r["lesson"], r["id"], r["kind"]) for r in rows} >= {("00", "q1", "predict"), ("03", "q2", "code"),
                                                                   ("03", "q4", "choice"), ("00", "q2", "number")}
    assert all(len(r["options"]) >= 2 for r in rows if r["kind"] in ("choice", "predict"))
    for lesson_id, total in exercises.totals().items():
        assert total >= 3 and sum(r["lesson"] == lesson_id for r in rows) == total
    with pytest.raises(ValueError, match="no checked questions for lesson '42'"):
        exercises.lesson("42")
    with pytest.raises(AttributeError, match="has no question 'q9'"):
        exercises.lesson("03").q9


def test_every_answer_cell_repeats_its_question_as_the_checker_asks_it():
    # An answer cell opens with "# qN: <prompt>": when a re-measured run changes a prompt's numbers, the cell's copy
    # must change with it, or the learner reads two versions of one question.
    import re
    from pathlib import Path

    import nbformat

    seen = 0
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        questions = {q.id: q for q in exercises.lesson(path.name[:2])}
        for cell in nbformat.read(path, as_version=4).cells:
            match = re.match(r"# (q\d+): (.*)", cell.source)
            if cell.cell_type == "code" and match:
                assert match.group(2).strip() == questions[match.group(1)].prompt.strip(), (path.name, match.group(1))
                seen += 1
    assert seen >= 30  # most questions have an answer cell (predictions have buttons instead)


def test_progress_counts_passes_and_checked_predictions_and_keeps_a_pass(tmp_path):
    import tl_lab

    ex = exercises.lesson("03")
    ex.q2.check(tl_lab.FreezePlan("stage5", bn="eval"))  # a miss: not counted
    assert progress.summary({"03": 4}) == {"03": {"checked": 0, "total": 4}}
    ex.q2.check(tl_lab.FreezePlan("stage6", bn="eval"))
    ex.q2.check(tl_lab.FreezePlan("stage5", bn="eval"))  # a later miss does not undo the pass
    ex.q1.predict("head only")
    ex.q1.check(results=RUN03)  # a wrong prediction held against a run: checked
    ex.q4.check(1)
    assert progress.summary({"03": 4}) == {"03": {"checked": 2, "total": 4}}
    doc = json.loads((tmp_path / "progress.json").read_text())
    assert doc["lessons"]["03"]["q2"]["passed"] is True and doc["lessons"]["03"]["q4"]["passed"] is False
    assert "checked 2 of 4" not in repr(ex) and "2 of 4 checked" in repr(ex)
    progress.reset("03")
    assert progress.summary({"03": 4})["03"]["checked"] == 0


def test_a_corrupt_progress_file_reads_as_empty_and_is_replaced_atomically(tmp_path):
    path = tmp_path / "progress.json"
    path.write_text("{not json")
    assert progress.load() == {}
    progress.mark("00", "q3", kind="choice", passed=True)
    assert json.loads(path.read_text())["lessons"] == {"00": {"q3": {
        "kind": "choice", "passed": True, "checked_at": json.loads(path.read_text())["lessons"]["00"]["q3"]["checked_at"]}}}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temporary file left behind


def test_tl_lab_progress_command_prints_the_table_and_json(capsys):
    from tl_lab.app.cli import main

    exercises.lesson("00").q3.check(0)
    assert main(["progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "lesson  checked  questions"
    assert out[1] == f"00{1:>13}  {exercises.totals()['00']:>9}"
    assert out[-1].startswith("(kept in ") and out[-1].endswith("nothing is sent anywhere)")
    assert main(["progress", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["lessons"]["00"]["checked"] == 1 and doc["lessons"]["00"]["questions"]["q3"]["passed"] is True
    assert doc["lessons"]["03"] == {"checked": 0, "total": exercises.totals()["03"], "questions": {}}


def test_a_learner_copy_without_solutions_drops_solution_cells_and_hides_solutions_but_still_checks(
        tmp_path, monkeypatch):
    import nbformat

    from tl_lab.app.lessons import copy_content

    source = tmp_path / "src"
    source.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("ex = exercises.lesson('03')"),
        nbformat.v4.new_code_cell("ex.q2.check(tl_lab.FreezePlan('stage6', bn='eval'))", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("Try it yourself."),
    ])
    nbformat.write(nb, source / "03_fine_tuning_and_freezing.ipynb")
    full, learner = tmp_path / "full", tmp_path / "learner"
    copy_content(full, source=source)
    done = copy_content(learner, source=source, solutions=False)
    kept = nbformat.read(learner / "03_fine_tuning_and_freezing.ipynb", 4)
    assert [c.source for c in kept.cells] == ["ex = exercises.lesson('03')", "Try it yourself."]
    assert len(nbformat.read(full / "03_fine_tuning_and_freezing.ipynb", 4).cells) == 3  # the default keeps them
    assert learner / ".tl_lab_no_solutions" in done["files"] and not (full / ".tl_lab_no_solutions").exists()

    q = exercises.lesson("03").q2
    assert "FreezePlan('stage6', bn='eval')" in q.solution()
    monkeypatch.chdir(learner)  # a kernel started beside the learner's copy
    assert q.solution().startswith("Your instructor left the solutions out of this copy")
    assert "FreezePlan" not in q.solution()
    assert q.check(tl_lab_plan("stage5")).message.startswith("That plan also trains stage5")


def tl_lab_plan(stage):
    import tl_lab

    return tl_lab.FreezePlan(stage, bn="eval")

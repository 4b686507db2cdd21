"""tl_lab's Jupyter server extension: the lesson routes (list, copy, open), the doctor route, bad input, login.

The routes run in a real jupyter_server (pytest-jupyter's ``jp_serverapp``/``jp_fetch``) whose root is a temp
folder; the packaged lessons are three small notebooks written here, so the tests do not depend on the lessons
being written in notebooks/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_jupyter import jupyter_server as _jupyter_plugin

import tl_lab
from tl_lab.app import lessons
from tl_lab.app.cli import lessons_source
from tl_lab.app.jupyter_server import handlers

# pytest-jupyter's fixtures for this module only: loading it as a plugin (pytest_plugins, -p) would give every test
# in the suite its autouse event-loop and server-cleanup fixtures.
globals().update({name: value for name, value in vars(_jupyter_plugin).items()
                  if name.startswith(("jp_", "http_server", "io_loop", "echo_kernel"))})

REPO = Path(__file__).resolve().parents[1]


def _notebook(cells, **tl_lab_meta):
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if tl_lab_meta:
        meta["tl_lab"] = tl_lab_meta
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": cells}


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text, count=None, outputs=()):
    return {"cell_type": "code", "metadata": {}, "source": text, "execution_count": count, "outputs": list(outputs)}


def _write(path: Path, nb) -> Path:
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """Three packaged lessons: metadata title/goal, a markdown heading only, and nothing (the file name)."""
    src = tmp_path / "packaged"
    src.mkdir()
    _write(src / "00_start_here.ipynb", _notebook(
        [_md("# Welcome\n\nSomething else."), _code("import tl_lab"), _code("print('done')")],
        title="Start here", goal="Train a head on clip art and beat raw pixels"))
    _write(src / "01_what_a_network_sees.ipynb", _notebook(
        [_md("Intro without a heading"), _md("## What a network sees\n\nFilters and **feature maps**, stage by stage."),
         _code("x = 1")]))
    _write(src / "02_freeze.ipynb", _notebook([_code("y = 2")]))
    monkeypatch.setattr(lessons, "lessons_source", lambda: src)
    return src


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"tl_lab": True}, "allow_unauthenticated_access": False}}


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop):
    """``api("GET", "lessons", params=...)`` / ``api("POST", "lessons/copy", {...})`` -> (status, JSON body)."""

    def call(method, route, body=None, *, raw=None, **kwargs):
        if method == "POST":
            kwargs["body"] = raw if raw is not None else json.dumps(body if body is not None else {})
        response = jp_asyncio_loop.run_until_complete(
            jp_fetch("tl-lab", *route.split("/"), method=method, raise_error=False, **kwargs))
        return response.code, json.loads(response.body or b"null")

    return call


@pytest.fixture
def outside(tmp_path):
    """A folder beside the server's root: nothing may ever be written into it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


# --------------------------------------------------------------------------------------------------- listing


def test_listing_before_any_copy_shows_the_packaged_lessons(api, packaged, jp_root_dir):
    status, listing = api("GET", "lessons")
    assert status == 200
    assert listing["folder"] is None
    assert listing["first"] == "00_start_here.ipynb"
    rows = {r["name"]: r for r in listing["lessons"]}
    assert [r["name"] for r in listing["lessons"]] == ["00_start_here.ipynb", "01_what_a_network_sees.ipynb",
                                                       "02_freeze.ipynb"]
    assert rows["00_start_here.ipynb"]["title"] == "Start here"  # metadata wins over the heading
    assert rows["00_start_here.ipynb"]["goal"] == "Train a head on clip art and beat raw pixels"
    assert rows["01_what_a_network_sees.ipynb"]["title"] == "What a network sees"  # first heading
    assert rows["01_what_a_network_sees.ipynb"]["goal"] == "Filters and feature maps, stage by stage."
    assert rows["02_freeze.ipynb"]["title"] == "Freeze"  # from the file name
    assert [r["number"] for r in listing["lessons"]] == [0, 1, 2]
    assert all(r["state"] == "missing" and r["path"] is None and not r["completed"] for r in listing["lessons"])
    assert list(jp_root_dir.iterdir()) == []  # listing writes nothing


def test_open_copies_the_lessons_into_tl_lab_lessons_of_the_current_folder(api, packaged, jp_root_dir):
    (jp_root_dir / "course").mkdir()
    status, opened = api("POST", "lessons/open", {"path": "course"})
    assert status == 200
    assert opened["path"] == "course/tl_lab_lessons/00_start_here.ipynb"
    assert opened["folder"] == "course/tl_lab_lessons"
    assert sorted(opened["copied"]) == [f"course/tl_lab_lessons/{p.name}" for p in sorted(packaged.glob("*.ipynb"))]
    copy = json.loads((jp_root_dir / opened["path"]).read_text())
    assert copy["metadata"]["tl_lab"]["copied_from"]["fingerprint"] == lessons.lesson_fingerprint(copy)

    # asked from the folder or from inside the lesson folder, the listing finds them (from the root it does not
    # look into every subfolder: the panel remembers the folder an open returned); a second open copies nothing
    for hint in ("course", "course/tl_lab_lessons"):
        status, listing = api("GET", "lessons", params={"path": hint})
        assert status == 200 and listing["folder"] == "course/tl_lab_lessons"
        assert all(r["state"] == "same" for r in listing["lessons"])
        assert listing["lessons"][0]["path"] == "course/tl_lab_lessons/00_start_here.ipynb"
    assert api("GET", "lessons")[1]["folder"] is None
    status, again = api("POST", "lessons/open", {"name": "02_freeze.ipynb", "path": "course"})
    assert status == 200 and again["copied"] == [] and again["path"] == "course/tl_lab_lessons/02_freeze.ipynb"


def test_open_uses_the_folder_that_already_holds_lessons_and_adds_only_missing_ones(api, packaged, jp_root_dir):
    mine = jp_root_dir / "notes"
    mine.mkdir()
    shutil.copy(packaged / "00_start_here.ipynb", mine / "00_start_here.ipynb")  # copied by hand, long ago
    status, opened = api("POST", "lessons/open", {"name": "01_what_a_network_sees.ipynb", "path": "notes"})
    assert status == 200
    assert opened["folder"] == "notes"
    assert opened["copied"] == ["notes/01_what_a_network_sees.ipynb", "notes/02_freeze.ipynb"]
    assert opened["kept"] == ["notes/00_start_here.ipynb"]
    assert not (mine / "tl_lab_lessons").exists()


# ------------------------------------------------------------------------------ never overwrite, offer updates


def test_an_edited_copy_is_never_overwritten(api, packaged, jp_root_dir):
    api("POST", "lessons/copy", {"path": "tl_lab_lessons"})
    target = jp_root_dir / "tl_lab_lessons" / "00_start_here.ipynb"
    nb = json.loads(target.read_text())
    nb["cells"].append(_code("my_own_experiment = 42"))
    edited = json.dumps(nb)
    target.write_text(edited)

    status, result = api("POST", "lessons/copy", {"path": "tl_lab_lessons", "updates": True})
    assert status == 200 and result["copied"] == [] and result["updates"] == []
    assert target.read_text() == edited
    _, listing = api("GET", "lessons")
    assert {r["name"]: r["state"] for r in listing["lessons"]}["00_start_here.ipynb"] == "edited"


def test_a_newer_packaged_version_is_offered_as_a_separate_copy(api, packaged, jp_root_dir):
    api("POST", "lessons/copy", {})  # default folder: tl_lab_lessons
    folder = jp_root_dir / "tl_lab_lessons"
    learner = folder / "02_freeze.ipynb"
    learner_nb = json.loads(learner.read_text())
    learner_nb["cells"][0]["execution_count"] = 1  # ran it: outputs are not edits
    learner.write_text(json.dumps(learner_nb))
    before = learner.read_text()

    _, listing = api("GET", "lessons")
    assert {r["name"]: r["state"] for r in listing["lessons"]}["02_freeze.ipynb"] == "same"

    _write(packaged / "02_freeze.ipynb", _notebook([_code("y = 2"), _code("z = 3  # new in this release")]))
    _, listing = api("GET", "lessons")
    row = {r["name"]: r for r in listing["lessons"]}["02_freeze.ipynb"]
    assert row["state"] == "update" and row["update_path"] is None

    status, result = api("POST", "lessons/copy", {"path": "tl_lab_lessons", "lessons": ["02_freeze.ipynb"],
                                                  "updates": True})
    assert status == 201
    version = listing["version"]
    assert result["updates"] == [f"tl_lab_lessons/02_freeze.v{version}.ipynb"]
    assert learner.read_text() == before
    fresh = json.loads((jp_root_dir / result["updates"][0]).read_text())
    assert [c["source"] for c in fresh["cells"]] == ["y = 2", "z = 3  # new in this release"]
    _, listing = api("GET", "lessons")
    assert {r["name"]: r for r in listing["lessons"]}["02_freeze.ipynb"]["update_path"] == result["updates"][0]
    # asking again makes no third copy
    _, again = api("POST", "lessons/copy", {"lessons": ["02_freeze.ipynb"], "updates": True})
    assert again["updates"] == result["updates"] and sorted(p.name for p in folder.glob("02_*")) == [
        "02_freeze.ipynb", f"02_freeze.v{version}.ipynb"]


def test_a_copy_of_unknown_origin_that_differs_is_flagged(api, packaged, jp_root_dir):
    folder = jp_root_dir / "tl_lab_lessons"
    folder.mkdir()
    _write(folder / "01_what_a_network_sees.ipynb", _notebook([_md("# Old text")]))  # e.g. `tl-lab lessons --copy`
    _, listing = api("GET", "lessons")
    assert {r["name"]: r["state"] for r in listing["lessons"]} == {
        "00_start_here.ipynb": "missing", "01_what_a_network_sees.ipynb": "differs", "02_freeze.ipynb": "missing"}


# ----------------------------------------------------------------------------------------------- completion


def test_completed_lessons_come_from_saved_outputs(api, packaged, jp_root_dir):
    api("POST", "lessons/copy", {})
    folder = jp_root_dir / "tl_lab_lessons"
    _write(folder / "00_start_here.ipynb", _notebook(
        [_md("# Welcome"), _code("import tl_lab", 1), _code("print('done')", 2, [{"output_type": "stream",
                                                                                   "name": "stdout",
                                                                                   "text": "done\n"}])],
        title="Start here"))
    _write(folder / "01_what_a_network_sees.ipynb", _notebook(
        [_code("x = 1", 1, [{"output_type": "error", "ename": "NameError", "evalue": "", "traceback": []}])]))
    _, listing = api("GET", "lessons")
    done = {r["name"]: r["completed"] for r in listing["lessons"]}
    assert done == {"00_start_here.ipynb": True, "01_what_a_network_sees.ipynb": False, "02_freeze.ipynb": False}


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("path", ["../outside", "/etc", "tl_lab_lessons/../../outside", "~/x", "C:/Windows"])
def test_paths_outside_the_root_are_refused(api, packaged, jp_root_dir, outside, path):
    status, error = api("POST", "lessons/copy", {"path": path})
    assert status == 400
    assert "root folder" in error["message"] and path in error["message"]
    status, error = api("POST", "lessons/open", {"path": path})
    assert status == 400 and "root folder" in error["message"]
    status, error = api("GET", "lessons", params={"path": path})
    assert status == 400
    assert list(outside.iterdir()) == [] and list(jp_root_dir.iterdir()) == []


def test_a_symbolic_link_out_of_the_root_is_refused(api, packaged, jp_root_dir, outside):
    (jp_root_dir / "escape").symlink_to(outside, target_is_directory=True)
    for body in ({"path": "escape"}, {"path": "escape/tl_lab_lessons"}):
        status, error = api("POST", "lessons/copy", body)
        assert status == 400 and "symbolic link" in error["message"]
    status, _ = api("POST", "lessons/open", {"path": "escape"})
    assert status == 400
    assert list(outside.iterdir()) == []


def test_hidden_missing_and_file_paths_get_clear_answers(api, packaged, jp_root_dir):
    (jp_root_dir / "notes.txt").write_text("not a folder")
    status, error = api("POST", "lessons/copy", {"path": ".secret"})
    assert status == 400 and "hidden" in error["message"]
    status, error = api("GET", "lessons", params={"path": "no/such/folder"})
    assert status == 404 and "no folder 'no/such/folder'" in error["message"]
    status, error = api("POST", "lessons/copy", {"path": "notes.txt"})
    assert status == 409 and "is a file" in error["message"]
    assert sorted(p.name for p in jp_root_dir.iterdir()) == ["notes.txt"]


def test_an_unknown_lesson_gets_404_naming_the_lessons(api, packaged, jp_root_dir):
    status, error = api("POST", "lessons/open", {"name": "99_flying.ipynb"})
    assert status == 404
    assert "unknown lesson '99_flying.ipynb'" in error["message"] and "00_start_here.ipynb" in error["message"]
    status, error = api("POST", "lessons/copy", {"lessons": ["00_start_here.ipynb", "../../etc/passwd"]})
    assert status == 404 and "unknown lesson" in error["message"]
    assert list(jp_root_dir.iterdir()) == []


@pytest.mark.parametrize("raw, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"updates": "yes"}', "'updates' must be true or false"),
    ('{"lessons": "00_start_here.ipynb"}', "'lessons' must be a list"),
    ('{"lessons": [1]}', "'lessons' must be a list of lesson file names"),
    ('{"path": 3}', "'path' must be a folder path"),
])
def test_malformed_requests_get_400(api, packaged, jp_root_dir, raw, words):
    status, error = api("POST", "lessons/copy", raw=raw)
    assert status == 400 and words in error["message"]
    assert list(jp_root_dir.iterdir()) == []


def test_every_route_needs_the_login(api, packaged, jp_root_dir):
    anonymous = {"headers": {"Authorization": ""}}
    assert api("GET", "lessons", **anonymous)[0] == 403
    assert api("POST", "lessons/copy", {}, **anonymous)[0] == 403
    assert api("POST", "lessons/open", {}, **anonymous)[0] == 403
    assert api("GET", "doctor", **anonymous)[0] == 403
    assert list(jp_root_dir.iterdir()) == []


# --------------------------------------------------------------------------------------------------- doctor


def test_a_doctor_that_fails_is_a_clear_500(api, monkeypatch):
    monkeypatch.setattr(handlers, "DOCTOR_COMMAND", [sys.executable, "-c", "import sys; sys.exit('weights broke')"])
    status, error = api("GET", "doctor")
    assert status == 500 and "weights broke" in error["message"] and "tl-lab doctor" in error["message"]


@pytest.mark.slow
def test_doctor_route_returns_the_report(api):
    status, report = api("GET", "doctor", request_timeout=300)
    assert status == 200
    names = {c["name"] for c in report["checks"]}
    assert {"python", "torch", "device", "embedded weights"} <= names
    assert report["ok"] == all(c["ok"] for c in report["checks"] if c["critical"])
    assert report["text"].startswith("tl-lab doctor") and report["python"] == sys.executable


# ------------------------------------------------------------------------------------------ lesson catalog


def test_workspace_resolve_stays_inside_the_root(tmp_path):
    ws = lessons.Workspace(tmp_path)
    assert ws.resolve("") == tmp_path.resolve()
    assert ws.resolve("a/./b/") == tmp_path.resolve() / "a" / "b"
    assert ws.api_path(ws.resolve("a/b") / "c.ipynb") == "a/b/c.ipynb" and ws.api_path(ws.resolve("")) == ""
    for bad in ("..", "a/../../b", "/abs", "a\0b"):
        with pytest.raises(lessons.LessonPathError):
            ws.resolve(bad)


def test_fingerprint_ignores_outputs_and_counts_but_not_sources():
    plain = _notebook([_code("x = 1")])
    ran = _notebook([_code(["x ", "= 1"], 7, [{"output_type": "stream", "name": "stdout", "text": "hi"}])])
    edited = _notebook([_code("x = 2")])
    assert lessons.lesson_fingerprint(plain) == lessons.lesson_fingerprint(ran)
    assert lessons.lesson_fingerprint(plain) != lessons.lesson_fingerprint(edited)


def test_the_real_lessons_are_listed_with_titles(tmp_path):
    """Whatever lesson notebooks notebooks/ holds right now, each gets a title and the first one opens."""
    listing = lessons.catalog(lessons.Workspace(tmp_path))
    names = sorted(p.name for p in lessons_source().glob("*.ipynb"))
    assert sorted(r["name"] for r in listing["lessons"]) == names
    assert all(r["title"] for r in listing["lessons"])
    if names:
        opened = lessons.open_lesson(lessons.Workspace(tmp_path))
        assert (tmp_path / opened["path"]).is_file()


# ------------------------------------------------------------------------------------- installed extension


def test_extension_entry_points_name_existing_things():
    (point,) = tl_lab._jupyter_server_extension_points()
    assert point["module"] == "tl_lab.app.jupyter_server"
    assert callable(__import__(point["module"], fromlist=["x"])._load_jupyter_server_extension)
    (lab,) = tl_lab._jupyter_labextension_paths()
    assert lab["dest"] == json.loads((REPO / "labextension" / "package.json").read_text())["name"]
    config = json.loads((REPO / "jupyter-config" / "server-config" / "tl_lab.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"tl_lab": True}


def _jupyter(*args: str) -> str:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, env=env,
                          timeout=180)
    return done.stdout + done.stderr


@pytest.mark.slow
def test_jupyter_lists_the_installed_extension():
    """After ``pip install -e .`` (Node.js present) both halves are installed and enabled."""
    built = (Path(tl_lab.__file__).parent / "labextension" / "package.json").is_file()
    if not built and shutil.which("node") is None:
        pytest.skip("Node.js is not installed, so `pip install -e .` could not build the JupyterLab extension")
    labext = _jupyter("labextension", "list")
    assert any("tl-lab" in line and "enabled" in line and "OK" in line for line in labext.splitlines()), labext
    server = _jupyter("server", "extension", "list")
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).split() for line in server.splitlines()]
    assert ["tl_lab", "enabled"] in lines, server  # enabled by etc/jupyter/jupyter_server_config.d/tl_lab.json
    assert ["tl_lab", "OK"] in lines, server  # and it imports and finds its extension points

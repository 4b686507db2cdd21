"""The server routes the JupyterLab extension calls, under ``<base_url>/tl-lab/``.

    GET  tl-lab/lessons?path=DIR   the lessons, where the learner's copies are, their state, which were run to the end,
                                   and how many of each lesson's checked questions the learner has checked
    POST tl-lab/lessons/copy       {"path": DIR, "lessons": [names], "updates": bool}: copy lessons into DIR
    POST tl-lab/lessons/open       {"name": NAME, "path": DIR}: make sure a lesson is in the workspace, say where
    GET  tl-lab/doctor             tl_lab.doctor()'s report as JSON (checks the Python that runs JupyterLab)

Every route needs the server's login (token or password) like the rest of the Jupyter API, and the same
permissions as the contents API (reading or writing files) or, for the doctor, running code. Bad input gets a 4xx
answer ``{"message": "..."}`` that says what was wrong; nothing is ever written outside the server's root.
The work itself is in :mod:`tl_lab.app.lessons`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from tl_lab.app import lessons

__all__ = ["DOCTOR_COMMAND", "DOCTOR_TIMEOUT_S", "NAMESPACE", "setup_handlers"]

NAMESPACE = "tl-lab"

# The doctor runs in a child process of the server's Python: a crashing check cannot take the server down, and
# its device check (which initialises CUDA when there is a GPU) does not hold GPU memory in the server for good.
DOCTOR_COMMAND: list[str] = [
    sys.executable, "-c",
    "import json; from tl_lab.app.doctor import doctor; r = doctor(print_report=False); "
    "print(json.dumps(dict(r.to_dict(), text=r.render())))",
]
DOCTOR_TIMEOUT_S = 300.0

T = TypeVar("T")


class _LessonsHandler(APIHandler):
    """Shared by the lesson routes: the workspace, the JSON body, errors as 4xx with a clear message."""

    auth_resource = "contents"  # same permissions as reading / writing files through the contents API

    def workspace(self) -> lessons.Workspace:
        manager = self.contents_manager
        root = getattr(manager, "root_dir", None) or self.settings["server_root_dir"]
        return lessons.Workspace(root, allow_hidden=bool(getattr(manager, "allow_hidden", False)))

    def json_body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as exc:
            raise web.HTTPError(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object, e.g. {\"path\": \"tl_lab_lessons\"}")
        return body

    def field(self, body: dict[str, Any], key: str, kind: type, default: Any, what: str) -> Any:
        """``body[key]`` (``default`` when absent or null), which must be a ``kind``; else a 400 naming ``what`` it must be."""
        value = body.get(key)
        if value is None:
            return default
        if not isinstance(value, kind):
            raise web.HTTPError(400, f"{key!r} must be {what}, got {json.dumps(value)}")
        return value

    async def run(self, work: Callable[[], T]) -> T:
        """Run file work off the event loop, turning its errors into HTTP answers."""
        try:
            return await IOLoop.current().run_in_executor(None, work)
        except lessons.LessonPathError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        except lessons.UnknownLessonError as exc:
            raise web.HTTPError(404, str(exc)) from None
        except PermissionError as exc:
            raise web.HTTPError(403, f"cannot write {exc.filename or 'there'}: permission denied; choose a folder "
                                     "you can write to") from None

    def reply(self, data: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class LessonListHandler(_LessonsHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        hint = self.get_query_argument("path", "")
        ws = self.workspace()
        self.reply(await self.run(lambda: with_checks(lessons.catalog(ws, hint=hint))))


def with_checks(catalog: dict[str, Any]) -> dict[str, Any]:
    """Add each lesson's checked-question progress: ``"checks": {"checked": n, "total": m}``, or None for a
    lesson without checked questions (read from the learner's local progress file, never sent elsewhere)."""
    from tl_lab.exercises import progress, totals

    counts = progress.summary(totals())
    for entry in catalog["lessons"]:
        number = entry.get("number")
        entry["checks"] = counts.get(f"{number:02d}") if isinstance(number, int) else None
    return catalog


class LessonCopyHandler(_LessonsHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        dest = self.field(body, "path", str, lessons.LESSONS_FOLDER, "a folder path (a string)")
        names = self.field(body, "lessons", list, None, "a list of lesson file names")
        if names is not None and not all(isinstance(n, str) for n in names):
            raise web.HTTPError(400, f"'lessons' must be a list of lesson file names, got {json.dumps(names)}")
        updates = self.field(body, "updates", bool, False, "true or false")
        ws = self.workspace()
        result = await self.run(lambda: lessons.copy_into(ws, dest=dest, names=names, updates=updates))
        self.set_status(201 if result["copied"] or result["updates"] else 200)
        self.reply(result)


class LessonOpenHandler(_LessonsHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        name = self.field(body, "name", str, None, "a lesson file name (a string)")
        hint = self.field(body, "path", str, "", "a folder path (a string)")
        ws = self.workspace()
        self.reply(await self.run(lambda: lessons.open_lesson(ws, name=name, hint=hint)))


class DoctorHandler(APIHandler):
    auth_resource = "kernels"  # it runs Python code on the server, so it needs the right to execute code

    @web.authenticated
    @authorized(action="execute")
    async def get(self) -> None:
        root = getattr(self.contents_manager, "root_dir", None) or self.settings["server_root_dir"]
        proc = await asyncio.create_subprocess_exec(
            *DOCTOR_COMMAND, cwd=str(Path(root)), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), DOCTOR_TIMEOUT_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise web.HTTPError(504, f"tl_lab.doctor() took longer than {DOCTOR_TIMEOUT_S:.0f} s; run `tl-lab "
                                     "doctor` in a terminal to see where it hangs") from None
        lines = out.decode("utf-8", "replace").strip().splitlines()
        try:
            report = json.loads(lines[-1])
        except (IndexError, ValueError):
            tail = err.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise web.HTTPError(500, f"tl_lab.doctor() failed (exit code {proc.returncode}): "
                                     + (" | ".join(tail) or "no output") + "; run `tl-lab doctor` in a terminal")
        report["python"] = DOCTOR_COMMAND[0]
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(report))


def setup_handlers(web_app: web.Application) -> None:
    """Add the routes under ``<base_url>/tl-lab/``."""
    base = url_path_join(web_app.settings["base_url"], NAMESPACE)
    web_app.add_handlers(".*$", [
        (url_path_join(base, "lessons"), LessonListHandler),
        (url_path_join(base, "lessons", "copy"), LessonCopyHandler),
        (url_path_join(base, "lessons", "open"), LessonOpenHandler),
        (url_path_join(base, "doctor"), DoctorHandler),
    ])

"""One check of ``tl-lab doctor``: what was checked, whether it passed, and the one command that fixes it.

Its own module so that the checks of every section (``doctor.py``, ``doctor_hub.py``) share it without importing
each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check"]


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    ``ok`` False with ``critical`` True is a problem (✗) that makes ``DoctorReport.ok`` False; with ``critical``
    False it is a warning (!) about something optional. ``fix`` is the one command that solves it. ``data`` holds
    the same facts as ``detail`` in JSON-able form (versions, paths, sizes) for programs such as a server route.

        >>> Check("captum", ok=False, detail="not installed", fix="pip install captum").mark
        '✗'
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    critical: bool = True
    section: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def mark(self) -> str:
        """``✓`` passed, ``✗`` a problem, ``!`` a warning about something optional."""
        if self.ok:
            return "✓"
        return "✗" if self.critical else "!"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return {"section": self.section, "name": self.name, "ok": self.ok, "critical": self.critical,
                "detail": self.detail, "fix": self.fix, "data": _jsonable(self.data)}



def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

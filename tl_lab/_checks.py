"""Argument checks shared by every layer: an unknown choice gets an error that lists the allowed ones."""

from __future__ import annotations

from collections.abc import Sequence


def check_choice(kind: str, given: Sequence[str], allowed: Sequence[str]) -> None:
    bad = [g for g in given if g not in allowed]
    if bad or not given:
        what = f"unknown {kind} {bad}" if bad else f"no {kind} given"
        raise ValueError(f"{what}; choose from: {', '.join(allowed)}")

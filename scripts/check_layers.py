"""List imports that go upward between tl_lab's layers (DESIGN.md: nothing below imports from above).

Usage: python scripts/check_layers.py  -> prints each upward import, exits 1 if there is any.
Layers, bottom to top: backbones, data, training, inside, plots, experiments, widgets, exercises, app.
"""

import ast
import sys
from pathlib import Path

LAYERS = ("backbones", "data", "training", "inside", "plots", "experiments", "widgets", "exercises", "app")
ROOT = Path(__file__).resolve().parents[1] / "tl_lab"


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[0] == "tl_lab" and parts[1] in LAYERS else None


def upward_imports(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        here = layer_of(".".join(rel.parts))
        if here is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                there = layer_of(name)
                if there is not None and there > here:
                    found.append(f"{rel.as_posix()}.py:{node.lineno} ({LAYERS[here]}) imports {name} ({LAYERS[there]})")
    return found


if __name__ == "__main__":
    bad = upward_imports()
    print("\n".join(bad) or "no upward imports")
    sys.exit(1 if bad else 0)

"""Rerun a recorded run outside Jupyter, on one process or many (``tl-lab train CONFIG.json [--nproc N]``).

``fit`` writes everything needed to repeat a run into ``run.json`` (``Run.config``): backbone, plan, data and its
arguments, seed, hyperparameters, the objective and every loss term (``config["terms"]``, rebuilt with
:func:`tl_lab.training.terms.terms_from_config`). This module rebuilds the same call. With ``--nproc N`` it hands over to PyTorch's
own launcher, ``torchrun`` (``python -m torch.distributed.run``), which starts N workers; each runs
:func:`run_from_config` under DistributedDataParallel (gloo on CPUs, NCCL on GPUs): a distributed sampler splits
every epoch's shuffled images across ranks, gradients are averaged, and only rank 0 logs and writes checkpoints.

Example::

    tl-lab train tl_lab_runs/20261122-101500-efficientnet_lite0-frozen-to-head/run.json --epochs 100
    tl-lab train run.json --nproc 2                      # or: torchrun --nproc_per_node 2 -m tl_lab.app.rerun run.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["load_config", "run_from_config", "rerun"]

_FIT_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "optimizer", "momentum", "schedule", "step_size", "gamma",
             "augment", "label_smoothing", "seed")


def load_config(path: str | Path) -> dict:
    """Read a ``run.json`` (its ``config``) or a file holding a bare ``Run.config``."""
    path = Path(path)
    if not path.is_file():
        where = f"{path}" if path.is_absolute() else f"{path} (looked for {path.resolve()}, from {Path.cwd()})"
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"no run configuration at {where}: it {what}; pass the run.json that fit wrote in "
                                "its run_dir")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); pass a run.json written by tl_lab.fit") from exc
    cfg = doc.get("config", doc) if isinstance(doc, dict) else None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} is not a tl_lab run configuration: it holds a JSON {type(doc).__name__}, not an object")
    missing = [k for k in ("backbone", "plan", "data", "num_classes") if k not in cfg]
    if missing:
        raise ValueError(f"{path} is not a tl_lab run configuration: missing {', '.join(missing)}")
    return cfg


def run_from_config(cfg: dict, *, run_dir: str | Path | None = None, epochs: int | None = None,
                    progress: bool = True, **overrides: Any):
    """Rebuild the data, backbone and plan of ``cfg`` and call ``fit`` with the recorded hyperparameters."""
    from tl_lab.backbones.registry import load_backbone
    from tl_lab.data.datasets import load_dataset
    from tl_lab.training.freeze import FreezePlan
    from tl_lab.training.loop import fit
    from tl_lab.training.terms import terms_from_config

    # the objective (multi-task heads) and every loss term (remedies, domain confusion ...), rebuilt from their
    # records first: a term that cannot be rebuilt is refused by name before anything loads or trains
    learner = terms_from_config(cfg)
    data_args = dict(cfg["data"])
    relabel = data_args.pop("relabel", None)
    data = load_dataset(data_args.pop("name"), **data_args)
    if relabel is not None:
        data = data.with_target(relabel)
    backbone = load_backbone(cfg["backbone"], pretrained=cfg.get("pretrained", True), num_classes=cfg["num_classes"],
                             seed=cfg.get("seed", 0))
    kwargs = {k: cfg[k] for k in _FIT_KEYS if k in cfg}
    kwargs.update(learner)
    if epochs is not None:
        kwargs["epochs"] = epochs
    kwargs.update(overrides)
    return fit(backbone, data, plan=FreezePlan(**cfg["plan"]), run_dir=run_dir, progress=progress, **kwargs)


def rerun(config: str | Path, *, nproc: int = 1, run_dir: str | Path | None = None, epochs: int | None = None,
          progress: bool = True):
    """Run ``config`` here (``nproc=1``, returns the Run) or under torchrun with ``nproc`` workers (returns None)."""
    cfg = load_config(config)
    if nproc <= 1:
        return run_from_config(cfg, run_dir=run_dir, epochs=epochs, progress=progress)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "tl_lab.app.rerun", str(config)]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if not progress:
        cmd.append("--quiet")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    completed = subprocess.run(cmd, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"torchrun exited with status {completed.returncode}; its workers' errors are printed above")
    return None


def _worker(argv: list[str] | None = None) -> int:
    """Entry point of each torchrun worker (``python -m tl_lab.app.rerun CONFIG``)."""
    import torch
    import torch.distributed as dist

    parser = argparse.ArgumentParser(prog="python -m tl_lab.app.rerun")
    parser.add_argument("config")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    distributed = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    try:
        run = run_from_config(load_config(args.config), run_dir=args.run_dir, epochs=args.epochs,
                              progress=not args.quiet)
        if not distributed or dist.get_rank() == 0:
            world = dist.get_world_size() if distributed else 1
            print(run.summary())
            print(f"ranks: {world}; run directory: {run.run_dir}")
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through torchrun in the tests
    sys.exit(_worker())

"""``eval_mode(model)``: evaluation mode for a block, every module's own train/eval flag restored after.

Why: analyses (features, probabilities, attributions) must run in eval mode (BatchNorm uses its running statistics,
dropout is off) and must leave a model that is half-way through training as they found it, including modules the
freeze plan locked in eval mode. ``model.train(was_training)`` would switch those back on; this restores each
module's flag exactly, also when the block raises.

Example::

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)).train()
    >>> _ = net[1].eval()                          # a frozen BatchNorm inside a training model
    >>> with eval_mode(net):
    ...     net.training, net[1].training
    (False, False)
    >>> net.training, net[0].training, net[1].training
    (True, True, False)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn as nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode for the ``with`` block; afterwards every submodule's flag is what it was."""
    flags = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag

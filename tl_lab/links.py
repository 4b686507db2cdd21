"""``tl_lab.links``: nbgitpuller and Binder launch links for a class (no PyTorch).

The code lives in the app layer, :mod:`tl_lab.app.links`; this name is the same module, so ``import tl_lab.links``,
``from tl_lab.links import nbgitpuller_link`` and ``tl_lab.links`` (after ``import tl_lab``) all reach it.
"""

import sys

from tl_lab.app import links as _links

sys.modules[__name__] = _links

"""tl_lab's Jupyter server extension: the routes behind the JupyterLab extension (Launcher card, Lessons panel,
doctor command).

Jupyter finds it through ``tl_lab._jupyter_server_extension_points()`` and enables it with the config file that
``pip install`` puts in ``etc/jupyter/jupyter_server_config.d/tl_lab.json``; ``jupyter server extension list``
shows it. The routes are in :mod:`tl_lab.app.jupyter_server.handlers`, the lesson logic in
:mod:`tl_lab.app.lessons`.
"""

from __future__ import annotations

from typing import Any

__all__: list[str] = []


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Add tl_lab's routes to a running Jupyter server (called by jupyter_server when the extension is enabled)."""
    from tl_lab.app.jupyter_server.handlers import NAMESPACE, setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("tl_lab: server extension loaded (routes under /%s/)", NAMESPACE)

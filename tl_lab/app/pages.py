"""STAND-IN, to be replaced: the offline page exporter from the ``pages`` branch goes here when it is merged.

Only the contract matters to the course site (:mod:`tl_lab.app.site`): ``export_page(notebook) -> str``, one
self-contained HTML document that loads nothing from the network. This small version is nbconvert's HTMLExporter
(lab template, without its CDN scripts: require.js, MathJax, mermaid, the widget manager) plus plotly.js inlined
from the installed plotly package, once per page, when an output carries ``application/vnd.plotly.v1+json``; a
short inline script draws those outputs. Widget views fall back to their text form.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

import nbformat

__all__ = ["export_page"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"

_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

_DRAW = """<script>
document.querySelectorAll('script[type="application/vnd.plotly.v1+json"]').forEach(function (data) {
  var fig = JSON.parse(data.textContent), gd = data.previousElementSibling;
  Plotly.newPlot(gd, fig.data || [], fig.layout || {}, Object.assign({displaylogo: false, responsive: true},
                 fig.config || {}));
});
</script>"""


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _figure_html(fig: dict) -> str:
    text = json.dumps(fig).replace("</", "<\\/")  # a "</script>" inside a label must not end the script
    return f'<div class="tl-plotly-figure"></div><script type="{PLOTLY_MIME}">{text}</script>'


def export_page(notebook: nbformat.NotebookNode | str | Path) -> str:
    """A self-contained offline HTML page for an (executed) notebook, or the path of one."""
    import jinja2
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else copy.deepcopy(notebook)
    figures = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                data["text/html"] = _figure_html(data[PLOTLY_MIME])
                figures += 1
    exporter = HTMLExporter(template_name="lab", extra_loaders=[jinja2.DictLoader({"tl_offline.html.j2": _TEMPLATE})],
                            template_file="tl_offline.html.j2")
    body, _ = exporter.from_notebook_node(nb)
    if figures:
        script = f"<script>{_plotly_js()}</script>\n"
        body = body.replace("</head>", script + "</head>", 1).replace("</body>", _DRAW + "\n</body>", 1)
    return body

"""Figure builders: each figure carries exactly the data it was given, labelled, and bad input is refused by name.

Offline and fast: figures are built, never shown. Only ``test_to_png_writes_a_png`` starts a browser (kaleido);
it skips, with the reason, where none can start.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from tl_lab import plots
from tl_lab.plots.style import OKABE_ITO, STRATEGY_COLORS, subtitle_of
from tl_lab.plots.training import term_keys, term_label

STAGES = ["stem", "stage1", "stage2", "stage3"]


def _records(accs, stages=STAGES, **extra):
    return [{"stage": s, "test_acc": a, **extra} for s, a in zip(stages, accs)]


def _png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def _titled(fig: go.Figure, words: str) -> None:
    assert words in fig.layout.title.text.replace("<br>", " ")
    assert fig.layout.template.layout.paper_bgcolor == "white"  # plotly_white


# ---- inside the network --------------------------------------------------------------------------------------


def test_filter_grid_enlarges_each_weight_with_nearest_neighbour():
    rng = np.random.default_rng(0)
    tiles = rng.random((32, 3, 3, 3)).astype(np.float32)
    fig = plots.filter_grid(tiles)
    assert [t.type for t in fig.data] == ["image", "heatmap"]
    mosaic = _png(fig.data[0].source)
    hover = fig.data[1]
    assert hover.z.shape == (4, 8) and np.array_equal(hover.z.ravel(), np.arange(32))
    up = int(round(2 * hover.x0 + 1)) // 3  # the hover cell is centred on the first tile: width 3 * up
    assert up >= 8, "3x3 kernels must be enlarged to be visible"
    first = mosaic[: 3 * up, : 3 * up]
    expected = np.rint(tiles[0] * 255).astype(np.uint8).repeat(up, 0).repeat(up, 1)
    assert np.array_equal(first, expected)
    assert (mosaic[:, 3 * up] == 255).all(), "a white gap separates tiles"
    assert "32 filters of 3x3" in subtitle_of(fig).replace("<br>", " ")


def test_filter_grid_refuses_bad_tiles():
    with pytest.raises(ValueError, match=r"\(K, h, w, 3\)"):
        plots.filter_grid(np.zeros((8, 3, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plots.filter_grid(np.full((4, 3, 3, 3), 2.0))
    fig = plots.filter_grid(np.random.default_rng(0).random((100, 5, 5, 3)), max_tiles=64)
    assert "the first 64 of 100" in subtitle_of(fig).replace("<br>", " ")


def test_feature_map_grid_puts_the_image_first_and_keeps_each_map():
    maps = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)
    fig = plots.feature_map_grid(maps, image=np.zeros((64, 64, 3), np.uint8), stage="stage3", channels=[7, 2, 9])
    assert [t.type for t in fig.data] == ["image", "heatmap", "heatmap", "heatmap"]
    for trace, m in zip(fig.data[1:], maps):
        assert np.allclose(trace.z, m)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["input image", "channel 7", "channel 2", "channel 9"]
    _titled(fig, "stage3")
    with pytest.raises(ValueError, match="channels has 2 indices but maps has 3"):
        plots.feature_map_grid(maps, channels=[1, 2])
    with pytest.raises(ValueError, match=r"maps must have shape \(k, h, w\)"):
        plots.feature_map_grid(maps[0])


def test_attribution_overlays_grid_and_scaling():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    cam = rng.random((2, 16, 16))
    fig = plots.attribution_overlays(images, {"pretrained": cam, "scratch": cam * 5}, row_titles=["cat", "dog"],
                                     percentile=100)
    # per row: the image, then for each column a greyscale background and a heatmap
    assert [t.type for t in fig.data] == ["image", "image", "heatmap", "image", "heatmap"] * 2
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert [t.name for t in heat] == ["pretrained", "scratch"] * 2
    assert np.array_equal(heat[0].z, np.rint(cam[0] / cam[0].max() * 100).astype(np.int8))
    assert np.array_equal(heat[0].z, heat[1].z), "each map is scaled on its own, so x5 looks the same"
    assert heat[0].zmin == 0 and heat[0].zmax == 100
    titles = {a.text for a in fig.layout.annotations}
    assert {"image", "pretrained", "scratch", "cat", "dog"} <= titles

    signed = plots.attribution_overlays(images, {"IG": cam - 0.5})
    h = [t for t in signed.data if t.type == "heatmap"][0]
    assert (h.zmin, h.zmax) == (-100, 100), "signed maps get a symmetric scale"
    assert "red = evidence for" in subtitle_of(signed)


def test_attribution_overlays_refuses_mismatched_maps():
    images = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"maps\['cam'\] has shape \(2, 8, 8\)"):
        plots.attribution_overlays(images, {"cam": np.zeros((2, 8, 8))})
    with pytest.raises(ValueError, match="row_titles has 3 names but images has 2"):
        plots.attribution_overlays(images, {"cam": np.zeros((2, 16, 16))}, row_titles=["a", "b", "c"])


def test_embedding_scatter_one_trace_per_class_with_indices():
    points = np.arange(20, dtype=float).reshape(10, 2)
    labels = np.array([0, 1] * 5)
    fig = plots.embedding_scatter(points, labels, ["cat", "dog"], indices=range(100, 110))
    assert [t.name for t in fig.data] == ["cat", "dog"]
    assert np.array_equal(fig.data[1].x, points[labels == 1, 0])
    assert list(fig.data[0].customdata) == [100, 102, 104, 106, 108]
    assert "cat" in fig.data[0].hovertemplate and "customdata" in fig.data[0].hovertemplate
    assert fig.data[0].marker.color == OKABE_ITO["blue"]
    named = plots.embedding_scatter(points, np.array(["dog", "cat"] * 5), ["cat", "dog"])
    assert np.array_equal(named.data[0].y, points[1::2, 1])
    with pytest.raises(ValueError, match="labels has 9 entries but points has 10"):
        plots.embedding_scatter(points, labels[:9], ["cat", "dog"])
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        plots.embedding_scatter(points, labels + 1, ["cat", "dog"])


# ---- per stage -----------------------------------------------------------------------------------------------


def test_probe_by_stage_values_and_baseline():
    fig = plots.probe_by_stage(_records([0.36, 0.48, 0.69, 0.76]), baseline=0.90)
    probe, base = fig.data
    assert list(probe.x) == STAGES and list(probe.y) == [0.36, 0.48, 0.69, 0.76]
    assert list(base.y) == [0.90, 0.90] and list(base.x) == ["stem", "stage3"]
    assert base.name == "raw pixels: 0.90"
    assert any("0.90" in a.text for a in fig.layout.annotations)
    assert fig.layout.yaxis.title.text == "test accuracy" and tuple(fig.layout.yaxis.range) == (0, 1.02)
    assert list(fig.layout.xaxis.categoryarray) == STAGES
    _titled(fig, "Which stage's features separate the classes best?")


def test_probe_by_stage_overlays_datasets_and_random_init():
    recs = {"digits": _records([0.36, 0.48, 0.69, 0.76]), "clipart": _records([0.26, 0.29, 0.40, 0.46])}
    fig = plots.probe_by_stage(recs, baseline={"digits": 0.90, "clipart": 0.34},
                               random_records={"clipart": _records([0.2, 0.2, 0.2, 0.2])})
    names = [t.name for t in fig.data]
    assert names == ["digits", "digits, raw pixels: 0.90", "clipart", "clipart, random init", "clipart, raw pixels: 0.34"]
    assert list(fig.data[2].y) == [0.26, 0.29, 0.40, 0.46]
    assert fig.data[3].line.dash == "dash"
    assert fig.data[0].line.color != fig.data[2].line.color
    with pytest.raises(ValueError, match=r"baseline has labels \['pets'\]"):
        plots.probe_by_stage(recs, baseline={"pets": 0.5})
    with pytest.raises(ValueError, match=r"record 1 lacks \['test_acc'\]; it has keys \['acc', 'stage'\]"):
        plots.probe_by_stage([{"stage": "stem", "test_acc": 0.3}, {"stage": "stage1", "acc": 0.4}])
    with pytest.raises(ValueError, match="must be an accuracy in"):
        plots.probe_by_stage(_records([36, 48, 69, 76]))


def test_cka_by_stage_and_matrix():
    fig = plots.cka_by_stage({"stem": 0.99, "stage1": 0.9, "stage2": 0.4})
    assert list(fig.data[0].x) == ["stem", "stage1", "stage2"] and list(fig.data[0].y) == [0.99, 0.9, 0.4]
    two = plots.cka_by_stage({"fine-tune": {"stem": 0.9}, "from stage5": {"stem": 1.0}})
    assert [t.name for t in two.data] == ["fine-tune", "from stage5"]
    with pytest.raises(ValueError, match="mixes numbers and dicts"):
        plots.cka_by_stage({"stem": 0.9, "run": {"stem": 1.0}})

    m = np.array([[1.0, 0.4, 0.2], [0.5, 0.9, 0.3]])
    fig = plots.cka_matrix(m, ["stem", "stage1"], ["stem", "stage1", "stage2"], names=("pretrained", "fine-tuned"))
    assert np.array_equal(fig.data[0].z, m) and (fig.data[0].zmin, fig.data[0].zmax) == (0, 1)
    assert fig.data[0].texttemplate == "%{z:.2f}"
    assert fig.layout.xaxis.title.text == "fine-tuned stage" and fig.layout.yaxis.title.text == "pretrained stage"
    with pytest.raises(ValueError, match="stages_b has 2 names but matrix's columns has 3"):
        plots.cka_matrix(m, ["stem", "stage1"], ["stem", "stage1"])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        plots.cka_matrix(m * 2, ["stem", "stage1"], ["stem", "stage1", "stage2"])


# ---- training outcomes ---------------------------------------------------------------------------------------


def _history(n):
    return [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 20, "val_acc": 0.4 + e / 20}
            for e in range(1, n + 1)]


def test_training_curves_one_legend_entry_per_run():
    runs = [{"label": "fine-tune", "history": _history(3)}, {"label": "scratch", "history": _history(2)}]
    fig = plots.training_curves(runs)
    assert len(fig.data) == 8
    assert [t.name for t in fig.data if t.showlegend] == ["fine-tune", "scratch"]
    val_acc = [t for t in fig.data if t.meta == {"run": "scratch", "metric": "val_acc"}][0]
    assert list(val_acc.x) == [1, 2] and np.allclose(val_acc.y, [0.45, 0.5])
    assert val_acc.line.dash == "solid" and fig.data[0].line.dash == "dash"  # train dashed, val solid
    assert val_acc.yaxis == "y2" and fig.data[0].yaxis == "y"
    assert fig.layout.xaxis2.title.text == "epoch" and "loss" in fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match="run labels must be unique"):
        plots.training_curves([runs[0], runs[0]])
    with pytest.raises(ValueError, match=r"lacks \['history'\]"):
        plots.training_curves([{"label": "x"}])


def test_empty_training_figure_is_extended_live():
    fig = plots.empty_training_figure("live", epochs=30)
    assert [t.meta["metric"] for t in fig.data] == list(plots.TRAINING_METRICS)
    assert all(len(t.x or ()) == 0 for t in fig.data)
    assert tuple(fig.layout.xaxis.range) == (0.5, 30.5) and fig.layout.xaxis.dtick == 3
    assert "waiting" in fig.layout.annotations[0].text
    for h in _history(2):
        plots.append_epoch(fig, h)
    assert not [a for a in fig.layout.annotations if a.name == "waiting"]
    assert fig.layout.xaxis.dtick == 3, "ticks follow the planned length, not the epochs so far"
    same = plots.training_curves([{"label": "live", "history": _history(2)}])
    for a, b in zip(fig.data, same.data):
        assert list(a.x) == list(b.x) and np.allclose(a.y, b.y)
    # with the length unknown (a panel before its first run), the empty epoch axis starts at 0, not plotly's -1
    unknown = plots.empty_training_figure("your first run").full_figure_for_development(warn=False)
    assert unknown.layout.xaxis.range[0] == 0 and unknown.layout.xaxis2.range[0] == 0
    with pytest.raises(ValueError, match="no run 'other'"):
        plots.append_epoch(fig, {"epoch": 3}, label="other")


def _history_with_terms(n):
    """History rows as the loop with loss terms writes them: train_loss is the total the optimiser minimised
    (task loss + LwF's distillation term), train_task_loss the objective alone, term_<name> each term's mean."""
    return [{"epoch": e, "train_loss": 2.0 / e + 2.0, "train_task_loss": 2.0 / e, "term_lwf": 2.0 - 0.1 * e,
             "val_loss": 2.1 / e, "train_acc": 0.5 + e / 20, "val_acc": 0.4 + e / 20} for e in range(1, n + 1)]


def test_training_curves_plot_the_task_loss_against_validation_and_the_terms_apart():
    runs = [{"label": "LwF", "history": _history_with_terms(3)}, {"label": "plain", "history": _history(2)}]
    fig = plots.training_curves(runs)
    by = {(t.meta["run"], t.meta["metric"]): t for t in fig.data}
    assert list(by) == [("LwF", m) for m in plots.TRAINING_METRICS] + [("LwF", "term_lwf")] + [
        ("plain", m) for m in plots.TRAINING_METRICS]
    # the dashed training curve beside val_loss is the task loss (2/e), not the total (2/e + 2)
    assert np.allclose(by["LwF", "train_loss"].y, [2.0, 1.0, 2 / 3]) and by["LwF", "train_loss"].yaxis == "y"
    assert np.allclose(by["plain", "train_loss"].y, [1.0, 0.5])  # no task loss recorded: train_loss, as before
    term = by["LwF", "term_lwf"]
    assert list(term.x) == [1, 2, 3] and np.allclose(term.y, [1.9, 1.8, 1.7])
    assert term.yaxis == "y3" and term.xaxis == "x3" and term.line.dash == "dot" and term.showlegend
    assert term.name == "LwF: LwF: distance to the original network's outputs"
    assert term.line.color == by["LwF", "val_loss"].line.color  # the run's colour
    assert fig.layout.yaxis3.title.text == "added loss terms" and fig.layout.xaxis3.matches == "x2"
    domains = [fig.layout.yaxis.domain, fig.layout.yaxis3.domain, fig.layout.yaxis2.domain]  # top to bottom
    assert all(a[0] > b[1] for a, b in zip(domains, domains[1:])), domains  # three panels, none overlapping
    assert "dotted: loss terms added to it" in subtitle_of(fig).replace("<br>", " ")
    plain = plots.training_curves([runs[1]])  # no terms: two panels, the usual subtitle
    assert "yaxis3" not in plain.layout and subtitle_of(plain) == "solid: validation · dashed: training"
    assert term_keys(_history_with_terms(1) + [{"term_domain": 0.1}]) == ["term_lwf", "term_domain"]
    assert term_label("term_domain_confusion") == "domain confusion: the domain classifier's loss"
    assert term_label("term_new_idea") == "new idea"  # a term the chart does not know: its name in words


def test_a_live_figure_gains_the_terms_panel_at_the_first_epoch_that_has_terms():
    fig = plots.empty_training_figure("live", epochs=5)
    assert "yaxis3" not in fig.layout
    history = _history_with_terms(3)
    plots.append_epochs(fig, history[:1])
    plots.append_epochs(fig, history[1:])
    same = plots.training_curves([{"label": "live", "history": history}])
    assert [t.meta for t in fig.data] == [t.meta for t in same.data]
    for a, b in zip(fig.data, same.data):
        assert list(a.x) == list(b.x) and np.allclose(a.y, b.y) and a.yaxis == b.yaxis
    assert fig.layout.yaxis3.domain == same.layout.yaxis3.domain and fig.layout.height == same.layout.height
    assert subtitle_of(fig) == subtitle_of(same)
    assert tuple(fig.layout.xaxis.range) == (0.5, 5.5), "the planned length still fixes the epoch axis"


def test_data_efficiency_averages_seeds_with_error_bars():
    recs = [{"strategy": "fine_tune", "shots": s, "test_acc": a, "seed": seed}
            for s, accs in [(1, (0.4, 0.6)), (5, (0.7, 0.7))] for seed, a in enumerate(accs)]
    recs += [{"strategy": "raw_pixels", "shots": s, "test_acc": 0.3} for s in (1, 5)]
    fig = plots.data_efficiency(recs)
    raw, ft = fig.data  # known strategies in a fixed order: raw pixels first
    assert ft.name == "fine-tune all" and list(ft.x) == [1, 5] and np.allclose(ft.y, [0.5, 0.7])
    assert np.allclose(ft.error_y.array, [np.std([0.4, 0.6], ddof=1), 0.0])
    assert ft.line.color == STRATEGY_COLORS["fine_tune"] and raw.line.dash == "dot"
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [1, 5]
    assert "2 seeds" in subtitle_of(fig)
    with pytest.raises(ValueError, match=r"lacks \['shots'\]"):
        plots.data_efficiency([{"strategy": "scratch", "test_acc": 0.2}])


def test_freeze_sweep_orders_by_frozen_stages():
    recs = [{"frozen_stages": k, "trainable_from": s, "init": init, "test_acc": a}
            for init, d in [("random", 0.0), ("pretrained", 0.5)]
            for k, s, a in [(3, "stage3", 0.3), (0, "stem", 0.4)] for a in [a + d]]
    fig = plots.freeze_sweep(recs)
    pre, rnd = fig.data
    assert pre.name == "pretrained init" and list(pre.y) == [0.9, 0.8]
    assert list(pre.x) == ["stem<br>(0 frozen)", "stage3<br>(3 frozen)"] and list(rnd.y) == [0.4, 0.3]
    assert pre.line.color == OKABE_ITO["blue"] and rnd.line.color == OKABE_ITO["vermillion"]
    with pytest.raises(ValueError, match="init must be 'pretrained' or 'random'"):
        plots.freeze_sweep([{**recs[0], "init": "imagenet"}])
    with pytest.raises(ValueError, match="paired with both"):
        plots.freeze_sweep([recs[0], {**recs[0], "trainable_from": "stage4"}])
    # freeze_sweep's own records use trainable_from=None for "everything trains"
    everything = plots.freeze_sweep([{"frozen_stages": 0, "trainable_from": None, "init": "pretrained", "test_acc": 0.7}])
    assert list(everything.data[0].x) == ["all stages<br>(0 frozen)"]


def test_comparison_bars_labelled_with_values():
    rows = [{"strategy": "frozen_head", "test_acc": 0.86}, {"strategy": "fine_tune", "test_acc": 0.91},
            {"strategy": "scratch", "test_acc": 0.41}, {"strategy": "raw_pixels", "test_acc": 0.34}]
    fig = plots.comparison_bars(rows, chance=0.1)
    bar = fig.data[0]
    assert bar.type == "bar" and list(bar.y) == [0.86, 0.91, 0.41, 0.34]
    assert list(bar.text) == ["0.86", "0.91", "0.41", "0.34"]
    assert list(bar.x) == ["frozen backbone + new head", "fine-tune all", "from scratch", "raw pixels"]
    assert list(bar.marker.color) == [STRATEGY_COLORS[k] for k in ("frozen_head", "fine_tune", "scratch", "raw_pixels")]
    assert fig.layout.shapes[0].y0 == 0.1 and fig.layout.yaxis.title.text == "test accuracy"
    with pytest.raises(ValueError, match="no records"):
        plots.comparison_bars([])


def test_confusion_matrix_normalises_rows():
    fig = plots.confusion_matrix([[8, 2], [1, 9]], ["cat", "dog"])
    assert np.allclose(fig.data[0].z, [[0.8, 0.2], [0.1, 0.9]]) and np.array_equal(fig.data[0].customdata, [[8, 2], [1, 9]])
    assert fig.layout.xaxis.title.text == "predicted class" and fig.layout.yaxis.title.text == "true class"
    assert "0.850 on 20 images" in subtitle_of(fig)
    counts = plots.confusion_matrix(np.array([[8, 2], [1, 9]]), ["cat", "dog"], normalize=False)
    assert np.array_equal(counts.data[0].z, [[8, 2], [1, 9]])
    with pytest.raises(ValueError, match="square"):
        plots.confusion_matrix(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="classes has 3 names but the matrix has 2"):
        plots.confusion_matrix(np.ones((2, 2)), ["a", "b", "c"])


# ---- export --------------------------------------------------------------------------------------------------


def test_save_html_embeds_plotlyjs_once_and_works_offline(tmp_path):
    figs = [plots.comparison_bars([{"strategy": "scratch", "test_acc": 0.4}]),
            plots.probe_by_stage(_records([0.3, 0.4, 0.5, 0.6])),
            plots.confusion_matrix([[1, 0], [0, 1]], ["a", "b"])]
    path = plots.save_html(figs, tmp_path / "page.html", title="Lesson <0>")
    page = path.read_text(encoding="utf-8")
    assert page.count("plotly.js v") == 1, "plotly.js is embedded exactly once"
    assert page.count('class="plotly-graph-div"') == 3
    assert not re.search(r"<script[^>]+src=[\"']?https?:", page), "no script from the network"
    assert "<title>Lesson &lt;0&gt;</title>" in page
    with pytest.raises(ValueError, match="not a plotly.graph_objects.Figure"):
        plots.save_html([figs[0], {"data": []}], tmp_path / "bad.html")
    with pytest.raises(ValueError, match="at least one figure"):
        plots.save_html(["<p>only text</p>"], tmp_path / "bad.html")
    mixed = plots.save_html(["<table id='runs'></table>", figs[0]], tmp_path / "mixed.html").read_text()
    assert mixed.index("<table id='runs'>") < mixed.index('class="plotly-graph-div"'), "HTML blocks keep their place"


def test_to_png_names_the_fix_without_a_browser(monkeypatch, tmp_path):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    with pytest.raises(plots.ImageExportError, match="BROWSER_PATH"):
        plots.to_png(go.Figure(), tmp_path / "x.png")


def test_to_png_names_the_fix_when_no_browser_is_installed(monkeypatch, tmp_path):
    Chromium = pytest.importorskip("choreographer.browsers.chromium").Chromium

    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kw: None))
    with pytest.raises(plots.ImageExportError, match="No Chrome or Chromium found.*apt install chromium"):
        plots.to_png(go.Figure(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_to_png_writes_a_png(tmp_path):
    try:
        plots.find_browser()
    except plots.ImageExportError as e:
        pytest.skip(f"no browser for kaleido: {e}")
    fig = plots.comparison_bars([{"strategy": "fine_tune", "test_acc": 0.9}])
    try:
        path = plots.to_png(fig, tmp_path / "bars.png", scale=1)
    except plots.ImageExportError as e:
        pytest.skip(f"kaleido could not start a browser here: {e}")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(path).size == (int(fig.layout.width), int(fig.layout.height))


def test_adding_the_terms_panel_inside_a_batch_sends_no_axis_together_with_its_children():
    """plotly.js refuses a relayout holding both 'yaxis3' and 'yaxis3.domain' (seen in the browser as "Error setting
    state: cannot set yaxis3.domain and a parent attribute simultaneously" when LwF's first epoch arrived)."""
    import plotly.graph_objects as go

    from tl_lab.plots.training import _add_terms_panel, training_curves

    widget = go.FigureWidget(training_curves([{"label": "a", "history": [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.4}]}]))
    sent = []
    widget._send_relayout_msg = lambda layout_data, source_view_id=None: sent.append(dict(layout_data))
    widget._send_update_msg = lambda restyle_data, relayout_data, trace_indexes=None, source_view_id=None: sent.append(
        dict(relayout_data))  # a batch ends with one Plotly.update
    with widget.batch_update():
        _add_terms_panel(widget)
    keys = [k for msg in sent for k in msg]
    assert "yaxis3" in keys and "xaxis3" in keys
    clashes = [(a, b) for a in keys for b in keys if b.startswith(a + ".")]
    assert clashes == [], clashes
    assert widget.layout.yaxis3.title.text == "added loss terms" and list(widget.layout.yaxis3.domain) == [0.385, 0.645]


# ---- figures that fit JupyterLab's output, labels that do not overlap, text that matches the colours --------------

OUTPUT_AREA_PX = 848  # JupyterLab's output width: a wider figure is cut at its right edge


def _label_boxes(fig, xaxis="xaxis", yaxis="yaxis"):
    """Each text label's pixel box, from the laid-out figure: its point's pixel position and its textposition
    (an estimate independent of the builders': characters 0.55 font sizes wide, the text beside the marker)."""
    lay = fig.layout
    xa, ya = getattr(lay, xaxis), getattr(lay, yaxis)
    (dx0, dx1), (dy0, dy1) = xa.domain or (0, 1), ya.domain or (0, 1)
    pw, ph = lay.width - lay.margin.l - lay.margin.r, lay.height - lay.margin.t - lay.margin.b
    boxes = []
    for t in fig.data:
        if not t.mode or "text" not in t.mode or (t.xaxis or "x") != xaxis.replace("axis", ""):
            continue
        texts = [t.text] * len(t.x) if isinstance(t.text, str) else list(t.text)
        positions = [t.textposition] * len(t.x) if isinstance(t.textposition, (str, type(None))) else list(t.textposition)
        for x, y, text, pos in zip(t.x, t.y, texts, positions):
            if not text:
                continue
            u = (np.log10(x) if xa.type == "log" else x)
            px = lay.margin.l + pw * (dx0 + (dx1 - dx0) * (u - xa.range[0]) / (xa.range[1] - xa.range[0]))
            py = lay.margin.t + ph * (1 - dy0 - (dy1 - dy0) * (y - ya.range[0]) / (ya.range[1] - ya.range[0]))
            w, h = len(text) * 11 * 0.55, 11
            vertical, horizontal = (pos or "top center").split()
            left = {"center": px - w / 2, "right": px + 4, "left": px - w - 4}[horizontal]
            top = {"top": py - 8 - h, "bottom": py + 8, "middle": py - h / 2}[vertical]
            boxes.append((text, (left, top, left + w, top + h)))
    return boxes


def _overlapping(boxes):
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:]
            if min(ba[2], bb[2]) > max(ba[0], bb[0]) and min(ba[3], bb[3]) > max(ba[1], bb[1])]


def test_adaptation_bars_fit_the_output_area_and_wrap_their_subtitle():
    from tl_lab.plots.adaptation import ADAPTATION_METHODS, adaptation_bars

    recs = [{"strategy": st, "shift": sh, "training": tr, "test_acc": 0.5}
            for sh in ("inverted", "blended") for st, tr, _ in ADAPTATION_METHODS.values()]
    sub = ("digits at 32 px, 10 labelled source images per class, 200 unlabelled target images; only the oracle and "
           "the bars marked '(target labels)' use them")
    fig = adaptation_bars(recs, subtitle=sub)
    assert len(fig.data) == 10 and fig.layout.width <= OUTPUT_AREA_PX  # was 1100: its right third was cut
    lines = subtitle_of(fig).split("<br>")
    assert len(lines) >= 2 and " ".join(lines) == sub
    assert all(len(line) * 13 * 0.5 <= fig.layout.width - 20 for line in lines)  # every line fits the figure


def test_domain_embedding_clips_one_outlier_and_names_the_colours_it_draws():
    from tl_lab.plots.adaptation import DOMAIN_COLORS, domain_embedding
    from tl_lab.plots.style import COLOR_WORDS

    rng = np.random.default_rng(0)
    xy = rng.normal(size=(200, 2))
    far = xy.copy()
    far[7] = (400.0, -300.0)  # one point far away, as the lesson's embeddings had in each panel
    fig = domain_embedding({"before": far, "after": far * 2}, [0] * 100 + [1] * 100)
    for col, scale in ((1, 1), (2, 2)):
        suffix = "" if col == 1 else str(col)
        for axis, k in (("xaxis", 0), ("yaxis", 1)):
            lo, hi = getattr(fig.layout, axis + suffix).range
            p1, p99 = np.percentile(far[:, k] * scale, [1, 99])
            assert lo <= p1 and hi >= p99 and not lo <= far[7, k] * scale <= hi, (axis + suffix, lo, hi)
    titles = [a.text for a in fig.layout.annotations]
    assert all("1 outlying point beyond the axes" in t for t in titles[:2])
    sub = subtitle_of(fig).replace("<br>", " ")
    assert "far beyond each component's 1st-99th percentile" in sub
    for domain in ("source", "target"):  # the words name the colours the points are drawn in
        assert f"{COLOR_WORDS[DOMAIN_COLORS[domain]]}: {domain}" in sub
    assert "red" not in sub
    assert fig.layout.width <= OUTPUT_AREA_PX
    plain = domain_embedding({"before": xy}, [0] * 100 + [1] * 100)  # nothing far: no note, every point shown
    assert "percentile" not in subtitle_of(plain) and "outlying" not in plain.layout.annotations[0].text


def test_score_vs_accuracy_labels_of_close_points_do_not_overlap():
    recs = [{"backbone": f"efficientnet_lite{i}", "logme": s, "leep": e, "test_acc": a}
            for i, s, e, a in ((0, -0.0583, -1.543, 0.770), (1, -0.0570, -1.617, 0.712), (2, -0.0725, -1.550, 0.761),
                               (3, -0.0580, -1.548, 0.765))]
    fig = plots.score_vs_accuracy(recs, tau={"logme": 0.3, "leep": 0.9}, baseline=0.83)
    for x, y in (("xaxis", "yaxis"), ("xaxis2", "yaxis")):
        boxes = _label_boxes(fig, x, y)
        assert len(boxes) == 4 and _overlapping(boxes) == [], (x, _overlapping(boxes))
    assert fig.layout.width <= OUTPUT_AREA_PX


def test_lesson12_figures_label_points_with_readable_names_that_do_not_overlap():
    from tl_lab.plots import efficiency_scatter, forgetting_tradeoff

    runs = [{"plan": p, "remedy": r, "images": "digits test", "top1_agreement": a, "task_b_test_acc": b}
            for p, r, a, b in (("frozen_head", "none", 1.0, 0.445), ("fine_tune", "none", 0.176, 0.271),
                               ("fine_tune", "lwf 1", 0.187, 0.304), ("fine_tune", "ewc 10000", 0.625, 0.273),
                               ("fine_tune", "l2sp 10", 0.319, 0.237))]  # our fast run: LwF sat on fine-tuning
    fig = forgetting_tradeoff(runs)
    boxes = _label_boxes(fig)
    assert sorted(t for t, _ in boxes) == ["EWC 10000", "L2-SP 10", "LwF 1", "fine-tune all", "frozen body"]
    assert _overlapping(boxes) == []
    eff = [{"dataset": "digits", "method": m, "trainable": n, "test_acc": a} for m, n, a in (
        ("raw pixels", 30730, 0.742), ("linear probe", 12810, 0.445), ("norm only", 54826, 0.241),
        ("bias_only", 33818, 0.210), ("lora_r2", 58378, 0.189), ("lora_r8", 195082, 0.258),
        ("full fine-tune", 3383818, 0.271), ("scratch", 3383818, 0.096))]
    fig = efficiency_scatter(eff)
    boxes = _label_boxes(fig)
    assert [t for t, _ in boxes] == ["linear probe", "norm only", "bias only", "LoRA r=2", "LoRA r=8",
                                     "full fine-tune", "scratch"]
    assert not any("_" in t.name for t in fig.data) and _overlapping(boxes) == []
    assert fig.layout.width <= OUTPUT_AREA_PX

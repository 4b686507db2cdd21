"""FeatureExplorer: look inside the pretrained network, stage by stage.

Pick an image (a sample photo, an image of the dataset, or one you upload) and a stage: the explorer shows that
stage's most active feature maps beside the image and the first-layer filters; two more buttons run the per-stage
linear probes on the dataset (with the raw-pixel baseline) and a 2-D embedding of the chosen stage's features.
Every number comes from :mod:`tl_lab.inside`; every picture from :mod:`tl_lab.plots`.

Example::

    >>> explorer = FeatureExplorer(dataset="clipart")
    >>> explorer.stage.value = "stage3"; explorer.show_button.click(); explorer.wait()
"""

from __future__ import annotations

import io

import ipywidgets as W
import numpy as np
from PIL import Image, UnidentifiedImageError

from tl_lab.backbones.samples import sample_photos
from tl_lab.inside.embedding import embed
from tl_lab.inside.feature_maps import feature_maps, filters
from tl_lab.inside.probes import probe_stages
from tl_lab.inside.stage_features import stage_features
from tl_lab.plots.inside import embedding_scatter, feature_map_grid, filter_grid
from tl_lab.plots.stages import probe_by_stage
from tl_lab.widgets.common import FigureSlot, StatusLine, Worker, guarded
from tl_lab.widgets.state import LabState

__all__ = ["FeatureExplorer", "read_upload"]


def read_upload(value) -> tuple[str, Image.Image]:
    """The first file of a ``FileUpload`` value as (name, RGB PIL image); a clear error when it is not an image."""
    files = list(value or ())
    if not files:
        raise ValueError("no file uploaded yet: click 'Upload' and choose a PNG or JPEG image")
    f = files[0]
    name = f.get("name", "upload") if isinstance(f, dict) else getattr(f, "name", "upload")
    content = f["content"] if isinstance(f, dict) else f.content
    try:
        with Image.open(io.BytesIO(bytes(content))) as im:
            return name, im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"could not read {name!r} as an image ({exc}); upload a PNG or JPEG file") from None


class FeatureExplorer(W.VBox):
    """Feature maps per stage, first-layer filters, per-stage probes and an embedding scatter of one backbone.

    ``backbone``: a registered name (the pretrained network; default the shared state's). ``dataset``: where
    dataset images, probes and the embedding come from. ``image``: a PIL image to start with (optional).
    """

    def __init__(self, backbone: str | None = None, dataset: str | None = None, *, shots: int | None = 10,
                 image: Image.Image | None = None, state: LabState | None = None) -> None:
        self.state = state if state is not None else LabState(
            backbone_name=backbone or "efficientnet_lite0", dataset=dataset or "clipart", shots=shots)
        self.photos = {p.name: p for p in sample_photos()}
        self._uploaded: tuple[str, Image.Image] | None = ("your image", image) if image is not None else None
        narrow = {"description_width": "90px"}
        self.source = W.Dropdown(options=[("sample photo", "photo"), ("dataset image (test split)", "dataset"),
                                          ("uploaded image", "upload")], value="upload" if image else "photo",
                                 description="image from", style=narrow)
        self.photo = W.Dropdown(options=list(self.photos), value=next(iter(self.photos)), description="photo",
                                style=narrow)
        self.index = W.BoundedIntText(value=0, min=0, max=10_000, description="test image #", style=narrow,
                                      layout=W.Layout(width="200px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.stage = W.Dropdown(description="stage", style=narrow)
        self.embed_method = W.Dropdown(options=[("PCA (fast)", "pca"), ("t-SNE (clusters)", "tsne")], value="pca",
                                       description="embedding", style=narrow)
        self.show_button = W.Button(description="Show", button_style="primary", icon="eye",
                                    tooltip="feature maps of this image at this stage, and the first-layer filters")
        self.show_button.add_class("tl-show")
        wide = W.Layout(width="auto", min_width="150px")  # the default 148 px cut these labels to "Probe every st…"
        self.probe_button = W.Button(description="Probe every stage", icon="line-chart", layout=wide,
                                     tooltip="a linear classifier on each stage's features (takes a few seconds)")
        self.embed_button = W.Button(description="Embed this stage", icon="braille", layout=wide,
                                     tooltip="the dataset's test images in 2-D, from this stage's features")
        self.status = StatusLine("Ready: pick an image and a stage, then click Show.")
        self.maps_fig = FigureSlot(css_class="tl-feature-figure", placeholder="feature maps appear here")
        self.filters_fig = FigureSlot(css_class="tl-feature-figure", placeholder="first-layer filters appear here")
        self.probe_fig = FigureSlot(css_class="tl-feature-figure", placeholder="click 'Probe every stage'")
        self.embed_fig = FigureSlot(css_class="tl-feature-figure", placeholder="click 'Embed this stage'")
        self.worker = Worker(self.status, self.show_button, self.probe_button, self.embed_button)
        self.show_button.on_click(guarded(self.status)(lambda _b: self.show()))
        self.probe_button.on_click(guarded(self.status)(lambda _b: self.probe()))
        self.embed_button.on_click(guarded(self.status)(lambda _b: self.embedding()))
        self.source.observe(lambda _c: self._show_inputs(), names="value")
        self.upload.observe(guarded(self.status)(self._on_upload), names="value")
        self.state.observe(guarded(self.status)(lambda _c: self._refresh_stages()), names="backbone_name")
        self._refresh_stages()
        self._show_inputs()
        super().__init__(children=[
            W.HTML("<b>Look inside.</b> Low stages respond to edges and colours wherever the image has them; high "
                   "stages to parts and objects, on a coarse grid. Probes measure how well each stage's features "
                   "separate the dataset's classes."),
            W.HBox([self.source, self.photo, self.index, self.upload]), W.HBox([self.stage, self.embed_method]),
            W.HBox([self.show_button, self.probe_button, self.embed_button]), self.status,
            self.maps_fig, self.filters_fig, self.probe_fig, self.embed_fig,
        ])
        self.add_class("tl-feature-explorer")

    # ---- actions --------------------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        self.worker.wait(timeout)

    def show(self) -> None:
        stage, bb = self.stage.value, self.state.backbone()
        name, image, pixels = self._image()

        def compute():
            maps = feature_maps(bb, image, stage, top_k=8)[stage]
            fig = feature_map_grid(maps.top_maps[0], image=pixels, stage=stage, channels=list(maps.top_channels[0]),
                                   title=f"What does {stage} respond to in {name}?")
            return fig, filter_grid(filters(bb).tiles, title=f"What do the first-layer filters of {self.state.backbone_name} look for?")

        def done(figs):
            self.maps_fig.show(figs[0])
            self.filters_fig.show(figs[1])
            self.status.set(f"Showing {stage} of {self.state.backbone_name} on {name}.", "ok")

        self.worker.start(f"Computing {stage}'s feature maps…", compute, done)

    def probe(self) -> None:
        bb, data = self.state.backbone(), self.state.data()

        def compute():
            return probe_stages(bb, data)

        def done(result):
            self.probe_fig.show(probe_by_stage(result.to_records(), baseline=result.baseline_test_acc))
            best = result.best_stage
            self.status.set(f"Probes done: best stage {best} (test acc {result.curve('test')[best]:.3f}); raw pixels "
                            f"{result.baseline_test_acc:.3f}.", "ok")

        self.worker.start(f"Fitting a linear probe on each stage of {self.state.backbone_name} ({data.name})…",
                          compute, done)

    def embedding(self) -> None:
        bb, data, stage, method = self.state.backbone(), self.state.data(), self.stage.value, self.embed_method.value

        def compute():
            feats = stage_features(bb, data.test, [stage])[stage]
            return embed(feats, method)

        def done(points):
            self.embed_fig.show(embedding_scatter(points, data.test.labels.numpy(), data.test.classes,
                                                  title=f"Do {stage}'s features group {data.name} by class?",
                                                  axis_titles=(f"{method} 1", f"{method} 2")))
            self.status.set(f"Embedded {len(points)} test images from {stage}.", "ok")

        self.worker.start(f"Embedding {data.name}'s test images from {stage} ({method})…", compute, done)

    # ---- inputs ---------------------------------------------------------------------------------------------
    def _image(self):
        """(name, input for feature_maps, display pixels (H, W, 3) uint8)."""
        src = self.source.value
        if src == "photo":
            name, im = self.photo.value, self.photos[self.photo.value].image()
        elif src == "upload":
            if self._uploaded is None:
                raise ValueError("no image uploaded yet: click 'Upload' and choose a PNG or JPEG image")
            name, im = self._uploaded
        if src in ("photo", "upload"):
            # show exactly the resized, centre-cropped view the network sees, so map positions line up with it
            bb = self.state.backbone()
            x, spec = bb.transform(im), bb.spec
            mean, std = np.array(spec.mean)[:, None, None], np.array(spec.std)[:, None, None]
            pixels = np.clip((x.numpy() * std + mean) * 255, 0, 255).round().astype(np.uint8).transpose(1, 2, 0)
            return name, [im], pixels
        split = self.state.data().test
        if not 0 <= self.index.value < len(split):
            raise ValueError(f"test image # must be between 0 and {len(split) - 1}")
        x = split.images[self.index.value : self.index.value + 1]
        label = split.classes[int(split.labels[self.index.value])]
        return f"test image #{self.index.value} ({label})", x, x[0].permute(1, 2, 0).numpy()

    def _on_upload(self, change: dict) -> None:
        self._uploaded = read_upload(change["new"])
        self.source.value = "upload"
        self.status.set(f"Uploaded {self._uploaded[0]}: click Show.", "ok")

    def _show_inputs(self) -> None:
        src = self.source.value
        self.photo.layout.display = "" if src == "photo" else "none"
        self.index.layout.display = "" if src == "dataset" else "none"
        self.upload.layout.display = "" if src == "upload" else "none"

    def _refresh_stages(self) -> None:
        stages = self.state.backbone().body_stages
        keep = self.stage.value
        self.stage.options = stages
        self.stage.value = keep if keep in stages else stages[len(stages) // 2]

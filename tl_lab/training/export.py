"""Export a trained run for use without tl_lab: ONNX (checked with onnxruntime), ``torch.export`` (``.pt2``), JSON.

``run.export("digits")`` (or ``export_run(run, "digits")``) writes three files side by side:

- ``digits.onnx``: the network with a softmax on top. Input ``image``: float32 ``(batch, 3, size, size)``, RGB,
  normalised with the backbone's mean and std; output ``probabilities``: ``(batch, classes)``, rows summing to 1,
  in the order of the JSON's ``classes``. The batch dimension is dynamic. Any ONNX runtime runs it (onnxruntime in
  Python, onnxruntime-web in a browser, ONNX Runtime Mobile ...).
- ``digits.pt2``: the same graph as a ``torch.export`` program (``torch.export.load(path).module()(x)``): PyTorch
  without tl_lab, and the input to ExecuTorch or AOTInductor.
- ``digits.json``: what a program needs to feed the model (the preprocessing: size, resize and crop rule, scale,
  mean, std, channel order, layout), what comes out, the class names, where the model came from, and the parity
  figures measured at export time.

The exported model outputs **probabilities** (softmax included), the same numbers :meth:`Run.predict` returns, so the
parity check compares like with like and a 20-line script needs no softmax of its own. The normalisation stays
outside the graph, in the JSON, as ImageNet models are usually shipped.

Why the ``torch.export``-based ONNX exporter (``dynamo=True``, needs ``onnxscript``) and not the TorchScript one
(``dynamo=False``): both export EfficientNet-Lite0, ResNet-18, MobileNetV3, ConvNeXt-Tiny and ViT-B/16 offline with
probabilities within 4e-7 of PyTorch's (random-init networks on random images), but the TorchScript exporter is deprecated (PyTorch 2.9+ warns that it will
be removed), and the dynamo exporter translates the very ``torch.export`` program saved as ``.pt2``, so both files
come from one trace of the model.

The check (``check=True``, the default): each written file is loaded back (``onnxruntime.InferenceSession``,
``torch.export.load``) and run on every image of the run's test split; its probabilities must lie within
``tolerance`` (absolute, default 1e-4) of the PyTorch model's and its top-1 class must agree on every image. The
reference is the exported copy run eagerly in float32 on the CPU (the run's own model on a GPU may use TF32 and differ
by more than the exporter does). A failure raises :class:`ExportParityError` and leaves no file behind: everything is
written to a temporary folder beside the target and moved into place only after every check passed.

Example::

    >>> data = tl_lab.load_dataset("digits", shots=3, image_size=32)                       # doctest: +SKIP
    >>> run = tl_lab.fit("efficientnet_lite0", data, epochs=30, progress=False)             # doctest: +SKIP
    >>> print(run.export("exports/digits"))   # 30 s on 2 CPU cores, mostly tracing         # doctest: +SKIP
    exported lite0, frozen to head, 3-shot (10 classes, 32 px) to exports/ in 33.5 s
      digits.onnx 13.7 MB: 539 test images, max |p - p_torch| 2.1e-06 (tolerance 1e-04), top-1 agreement 539/539
      digits.pt2 14.4 MB: 539 test images, max |p - p_torch| 0.0e+00 (tolerance 1e-04), top-1 agreement 539/539
      digits.json 2.0 kB (preprocessing, classes, parity)
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import torch
from torch import nn


# The standalone prediction script (the README's "Predicting outside the kit"), written beside an ONNX export.
PREDICT_SCRIPT_SOURCE = Path(__file__).resolve().parents[1] / "assets" / "predict_onnx.py"
PREDICT_SCRIPT = Path("predict.py")


class Run(Protocol):
    """What an export reads of a :class:`tl_lab.training.run.Run` (typed here so this module, which ``Run.export``
    imports, does not import run.py back)."""

    name: str
    backbone: Any
    data: Any
    best: dict
    run_dir: Path | None
    tasks: Any

    @property
    def model(self) -> nn.Module: ...

    @property
    def label(self) -> str: ...

__all__ = [
    "DEFAULT_TOLERANCE",
    "EXPORT_MISSING",
    "OPSET",
    "ExportFormat",
    "ExportParityError",
    "ExportResult",
    "PREDICT_SCRIPT",
    "Parity",
    "compare_probabilities",
    "export_run",
    "exportable_model",
]

ExportFormat = Literal["onnx", "pt2"]
DEFAULT_TOLERANCE = 1e-4  # absolute, on probabilities; measured differences are ~1e-7 (float32 rounding)
OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
EXPORT_MISSING = ('exporting to ONNX needs {missing}: the optional extra of tl_lab, pip install "tl-lab[export]" '
                  "(or pip install onnx onnxscript onnxruntime), then restart the kernel; "
                  'run.export(path, formats=("pt2",)) needs nothing extra')
_BATCH = 64


class ExportParityError(RuntimeError):
    """An exported file does not reproduce the PyTorch model's probabilities; nothing was written."""


@dataclass(frozen=True)
class Parity:
    """How one exported file's probabilities compare with PyTorch's on ``n_images`` images of ``split``."""

    format: str
    split: str
    n_images: int
    max_abs_diff: float  # max over images and classes of |p_exported - p_torch|
    top1_agreement: int  # images whose top-1 class is the same
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_agreement == self.n_images

    def describe(self) -> str:
        return (f"{self.n_images} {self.split} images, max |p - p_torch| {self.max_abs_diff:.1e} "
                f"(tolerance {self.tolerance:.0e}), top-1 agreement {self.top1_agreement}/{self.n_images}")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote: ``paths`` and ``sizes`` (bytes) per format (``"onnx"``, ``"pt2"``, ``"json"``),
    the ``parity`` of each checked format, and ``info``, the JSON file's contents."""

    paths: dict[str, Path]  # and "script": predict.py, beside an ONNX file (needs only onnxruntime, numpy, Pillow)
    sizes: dict[str, int]
    parity: dict[str, Parity]
    info: dict = field(repr=False)
    seconds: float = 0.0

    def summary(self) -> str:
        folder = next(iter(self.paths.values())).parent
        lines = [(f"exported {self.info['source']['run_label']} ({len(self.info['classes'])} classes, "
                  f"{self.info['preprocessing']['size']} px) to {folder}/ in {self.seconds:.1f} s")]
        for kind, path in self.paths.items():
            check = f": {self.parity[kind].describe()}" if kind in self.parity else ""
            if kind == "json":
                lines.append(f"  {path.name} {self.sizes[kind] / 1e3:.1f} kB (preprocessing, classes, parity)")
            elif kind == "script":
                lines.append(f"  {path.name}: python {path.name} {self.paths['onnx'].name} IMAGE ... (needs only "
                             "onnxruntime, numpy and Pillow)")
            else:
                lines.append(f"  {path.name} {self.sizes[kind] / 1e6:.1f} MB{check}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class _Probabilities(nn.Module):
    """The network with a softmax on top: normalised images ``(N, 3, H, W)`` -> probabilities ``(N, classes)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image).float().softmax(dim=1)


def exportable_model(run: Run) -> nn.Module:
    """A float32 CPU copy of ``run``'s model in eval mode, LoRA merged, with a softmax on top (what is exported).

    The run's own model is left as it is. A LoRA run's factors are folded into the weights
    (:func:`~tl_lab.training.peft_params.merge_lora`), so the exported graph holds plain layers and needs no peft.
    A multi-task run is refused: its model outputs every task's logits side by side.
    """
    if run.tasks is not None:
        raise ValueError(f"run.export cannot export a multi-task run yet (tasks {', '.join(run.tasks.names)}): its "
                         "model outputs the tasks' logits side by side, which one softmax would mix; train one "
                         "task per run (fit without tasks=, data loaded with target=...) to export it")
    from tl_lab.training.peft_params import is_lora_layer, merge_lora

    model = copy.deepcopy(run.model).to(device="cpu", dtype=torch.float32, memory_format=torch.contiguous_format)
    if any(is_lora_layer(m) for m in model.modules()):
        model = merge_lora(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return _Probabilities(model).eval()


def export_run(run: Run, path: str | Path, *, formats: Sequence[ExportFormat] = ("onnx", "pt2"), check: bool = True,
               tolerance: float = DEFAULT_TOLERANCE) -> ExportResult:
    """Write ``run``'s trained network as ``<path>.onnx`` and/or ``<path>.pt2``, with ``<path>.json`` beside them.

    ``path``: the files' common name (``"exports/digits"``; a ``.onnx``/``.pt2``/``.json`` suffix is dropped; an
    existing folder gets ``model.*`` inside). ``formats``: ``"onnx"`` (needs ``pip install "tl-lab[export]"``),
    ``"pt2"`` (PyTorch only). ``check``: run every file on the test split and compare with PyTorch (see the module's
    docstring); ``tolerance``: the largest absolute probability difference accepted.
    Returns an :class:`ExportResult`; raises :class:`ExportParityError` (no file written) when a check fails.
    """
    formats = _check_formats(formats)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf:
        raise ValueError(f"tolerance must be a number >= 0 (an absolute probability difference); got {tolerance!r}")
    stem = _stem(path)
    if run.run_dir is not None and stem.parent.resolve() == Path(run.run_dir).resolve() and stem.name == "run":
        raise ValueError(f"exporting as {stem} would overwrite the run's own run.json; choose another name, "
                         f"e.g. run.export({str(stem.parent / 'model')!r})")
    model = exportable_model(run)  # refuses a multi-task run
    if "onnx" in formats:
        _require_onnx(check)
    started = time.perf_counter()
    size = int(run.data.image_size)
    split, images = _check_images(run) if check else ("", None)
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))

    stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem.name}.export-", dir=stem.parent))
    try:
        written: dict[str, Path] = {}
        parity: dict[str, Parity] = {}
        normalize = run.backbone.normalize
        reference = _batched(model, images, normalize) if check else None
        if "pt2" in formats:
            written["pt2"] = tmp / f"{stem.name}.pt2"
            torch.export.save(program, written["pt2"])
            if check:
                loaded = torch.export.load(written["pt2"]).module()
                parity["pt2"] = compare_probabilities("pt2", split, _batched(loaded, images, normalize), reference, tolerance)
        if "onnx" in formats:
            written["onnx"] = tmp / f"{stem.name}.onnx"
            torch.onnx.export(program, (example,), str(written["onnx"]), dynamo=True, external_data=False,
                              opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              verbose=False)
            if check:
                probs = _onnx_probabilities(written["onnx"], images, normalize)
                parity["onnx"] = compare_probabilities("onnx", split, probs, reference, tolerance)
        failed = [p for p in parity.values() if not p.ok]
        if failed:
            raise ExportParityError(
                "the exported model does not reproduce PyTorch's probabilities, so nothing was written: "
                + "; ".join(f"{p.format}: {p.describe()}" for p in failed)
                + '. Export with formats=("pt2",) meanwhile, and report it with the backbone\'s name and these '
                + "figures")
        info = _info(run, stem, written, parity, tolerance, split)
        written["json"] = tmp / f"{stem.name}.json"
        written["json"].write_text(json.dumps(info, indent=1) + "\n")
        if "onnx" in written:  # the script that runs it elsewhere (the README's "Predicting outside the kit")
            written["script"] = tmp / PREDICT_SCRIPT.name
            shutil.copyfile(PREDICT_SCRIPT_SOURCE, written["script"])
        written = {kind: written[kind] for kind in ("onnx", "pt2", "json", "script") if kind in written}
        final = {kind: stem.parent / f.name for kind, f in written.items()}
        sizes = {kind: f.stat().st_size for kind, f in written.items()}
        for kind, f in written.items():
            f.replace(final[kind])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(paths=final, sizes=sizes, parity=parity, info=info, seconds=time.perf_counter() - started)


# ------------------------------------------------------------------------------------------------------- helpers


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    allowed = get_args(ExportFormat)
    chosen = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in chosen if f not in allowed]
    if bad or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"formats must name one or both of {', '.join(map(repr, allowed))}, each once; "
                         f"got {formats!r}")
    return chosen


def _require_onnx(check: bool) -> None:
    """Raise an ImportError naming the extra when a package the ONNX export needs is missing (looked up, not
    imported: onnx and onnxscript take 1.8-4 s to import, and torch.onnx imports them itself)."""
    if torch.__version__ < "2.6":  # TorchVersion compares with strings; dynamo= and external_data= arrived in 2.5/2.6
        raise ImportError(f"exporting to ONNX needs torch 2.6 or later (this is {torch.__version__}): "
                          'pip install -U "torch>=2.6"; run.export(path, formats=("pt2",)) works with this torch')
    needed = ("onnx", "onnxscript") + (("onnxruntime",) if check else ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(EXPORT_MISSING.format(missing=" and ".join(missing)))


def _stem(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        return p / "model"
    return p.with_suffix("") if p.suffix in (".onnx", ".pt2", ".json") else p


def _check_images(run: Run) -> tuple[str, torch.Tensor]:
    """The split the check runs on: the test split, or the first non-empty one of val and train."""
    for split in ("test", "val", "train"):
        images = getattr(run.data, split).images
        if len(images):
            return split, images
    raise ValueError("the run's data has no images to check the export on; pass check=False to export unchecked")


@torch.no_grad()
def _batched(model: nn.Module, images: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``model`` (already in eval mode: an exported program's module cannot switch) on uint8 ``images``, normalised
    one batch at a time (a large test split never sits in memory as float32)."""
    return torch.cat([model(normalize(images[lo : lo + _BATCH])) for lo in range(0, len(images), _BATCH)])


def _onnx_probabilities(path: Path, images: torch.Tensor,
                        normalize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """onnxruntime's probabilities for uint8 ``images``, normalised by ``normalize`` one batch at a time."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.cat([
        torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: normalize(images[lo : lo + _BATCH]).numpy()})[0])
        for lo in range(0, len(images), _BATCH)])


def compare_probabilities(kind: str, split: str, probs: torch.Tensor, reference: torch.Tensor,
                          tolerance: float) -> Parity:
    """The check: ``probs`` (an exported file's) against ``reference`` (PyTorch's), both ``(N, classes)``.

    >>> p = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    >>> compare_probabilities("onnx", "test", p.flip(1), p, 1e-4).describe()
    '2 test images, max |p - p_torch| 4.0e-01 (tolerance 1e-04), top-1 agreement 0/2'
    """
    if probs.shape != reference.shape:
        return Parity(kind, split, len(reference), math.inf, 0, tolerance)
    return Parity(kind, split, len(reference), float((probs.float() - reference).abs().max()),
                  int((probs.argmax(1) == reference.argmax(1)).sum()), tolerance)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _info(run: Run, stem: Path, written: dict[str, Path], parity: dict[str, Parity], tolerance: float,
          split: str) -> dict:
    """The JSON written beside the model: everything a program needs to use it, and where it came from."""
    from tl_lab.training.peft_params import is_lora_layer

    spec = run.backbone.spec
    size = int(run.data.image_size)
    classes = [str(c) for c in run.data.classes]
    return {
        "format": "tl_lab model export 1",
        "files": {kind: f.name for kind, f in written.items()},
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, size, size], "dtype": "float32", "layout": "NCHW",
                  "batch": "dynamic"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(classes)], "dtype": "float32",
                   "meaning": "softmax probabilities, one per class in the order of 'classes'; each row sums to 1"},
        "preprocessing": {
            "size": size,
            "resize": f"convert to RGB (transparency composited on white); resize so the short side is {size} px "
                      "(bicubic), then crop the centre square: PIL.ImageOps.fit(image, (size, size), BICUBIC)",
            "resample": "bicubic",
            "crop": "center",
            "channel_order": "RGB",
            "scale": 1 / 255,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "formula": "x = (pixels / 255 - mean) / std, per channel, then HWC -> CHW and a batch axis",
        },
        "classes": classes,
        "source": {"run_name": run.name, "run_label": run.label, "backbone": run.backbone.name,
                   "dataset": run.data.name, "best": {k: v for k, v in run.best.items() if isinstance(v, (int, float))},
                   "lora_merged": any(is_lora_layer(m) for m in run.model.modules())},
        "parity": {kind: {**asdict(p), "ok": p.ok} for kind, p in parity.items()},
        "checked": bool(parity),
        "tolerance": tolerance,
        "opset": OPSET if "onnx" in written else None,
        "versions": {"tl_lab": _version("tl-lab") or "dev", "torch": torch.__version__,
                     **{name: _version(name) for name in ("onnx", "onnxscript", "onnxruntime") if "onnx" in written}},
    }

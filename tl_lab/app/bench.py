"""``tl-lab bench``: speed measured side by side in one process, printed as ratios, written as JSON.

Benchmarks are not tests: they report what this machine does, so a teacher can check a class's hub and a
developer can see whether a change made tl_lab slower. Each case runs the compared variants one after the other in
the same process on the same data, and records wall time, accuracy where it applies, and peak resident memory
(plus peak CUDA memory on a GPU).

Cases:
- ``cache``: frozen-head training with the cached frozen prefix vs the naive loop (full forward every batch);
- ``callbacks``: ``fit`` with a do-nothing widget-style callback vs none;
- ``panel``: ``fit`` with the TrainPanel's live-chart work as a callback (:class:`LiveChart`: the panel's figure,
  throttled ``append_epochs``) vs none;
- ``throughput``: images/s for forward passes and training steps per backbone available offline (CUDA: AMP and
  channels_last on/off);
- ``peer``: the PyTorch transfer-learning tutorial's recipe vs tl_lab's default frozen-head and fine-tune plans.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from tl_lab.app.memory import PeakMemory

__all__ = ["PeakMemory", "main", "run_bench"]


@contextmanager
def _measure(record: dict) -> Iterator[dict]:
    with PeakMemory() as mem:
        start = time.perf_counter()
        yield record
        record["seconds"] = round(time.perf_counter() - start, 3)
    record["peak_rss_mb"] = round(mem.peak_mb, 1)
    if mem.cuda_peak_mb is not None:
        record["peak_cuda_mb"] = round(mem.cuda_peak_mb, 1)


def _fit_case(name: str, data, tmp: Path, **kw: Any) -> dict:
    from tl_lab.training.loop import fit

    record: dict[str, Any] = {"case": name}
    with _measure(record):
        run = fit(kw.pop("backbone", "efficientnet_lite0"), data, progress=False, run_dir=tmp / name, **kw)
    record.update(test_acc=round(run.best.get("test_acc", float("nan")), 4), epochs=len(run.history), cache=run.cache,
                  cache_build_s=round(run.timings["cache_s"], 3), epochs_s=round(run.timings["train_s"], 3))
    return record


def bench_cache(data, tmp: Path, *, epochs: int) -> dict:
    from tl_lab.training.freeze import FreezePlan

    plan = FreezePlan.frozen_head()
    # Untimed warm-up (oneDNN kernels for these shapes, the weights file, lazy imports): whichever case ran first
    # would otherwise pay it alone.
    _fit_case("warm-up", data, tmp, plan=plan, epochs=1)
    cached = _fit_case("cached prefix", data, tmp, plan=plan, epochs=epochs)
    naive = _fit_case("naive loop", data, tmp, plan=plan, epochs=epochs, cache=False)
    # The cached run cannot be faster than its one forward pass over every image: naive time / build time bounds
    # the ratio at this number of epochs (it grows with epochs).
    bound = naive["seconds"] / cached["cache_build_s"] if cached["cache_build_s"] > 0 else None
    return {"cases": [cached, naive], "speedup": round(naive["seconds"] / cached["seconds"], 1),
            "accuracy_gap": round(abs(cached["test_acc"] - naive["test_acc"]), 4), "epochs": epochs,
            "upper_bound": round(bound, 1) if bound else None, "target": ">= 20x on CPU"}


def bench_callbacks(data, tmp: Path, *, epochs: int, repeats: int = 5) -> dict:
    from tl_lab.training.events import BatchEnd, EpochEnd
    from tl_lab.training.freeze import FreezePlan

    class WidgetLike:  # does what a live chart's callback does, minus drawing: keep points, throttle
        def __init__(self) -> None:
            self.points: list[tuple[float, float]] = []
            self.last = 0.0

        def __call__(self, event: Any) -> None:
            if isinstance(event, BatchEnd):
                now = time.monotonic()
                if now - self.last > 0.25:
                    self.last = now
                    self.points.append((event.epoch + event.batch / event.batches, event.loss))
            elif isinstance(event, EpochEnd):
                self.points.append((event.epoch + 1.0, event.metrics["train_loss"]))

    plan = FreezePlan(trainable_from="stage7")
    bare, hooked = [], []
    for i in range(repeats):  # interleaved: both variants see the same machine conditions
        bare.append(_fit_case(f"no callback {i}", data, tmp, plan=plan, epochs=epochs))
        hooked.append(_fit_case(f"widget-style callback {i}", data, tmp, plan=plan, epochs=epochs, callbacks=[WidgetLike()]))
    return {"cases": bare + hooked, **_overhead(bare, hooked), "target": "<= 5%"}


def _overhead(bare: list[dict], other: list[dict]) -> dict:
    """Median-vs-median overhead of interleaved repeats, with the bare runs' spread: the noise it must beat."""
    b = statistics.median(r["seconds"] for r in bare)
    o = statistics.median(r["seconds"] for r in other)
    spread = (max(r["seconds"] for r in bare) - min(r["seconds"] for r in bare)) / b
    return {"overhead_pct": round(100 * (o - b) / b, 2), "noise_pct": round(100 * spread, 2),
            "median_s": {"bare": round(b, 3), "other": round(o, 3)}}


class LiveChart:
    """What :class:`~tl_lab.widgets.TrainPanel` does with fit's events, without building a widget.

    The panel's handler is a method of the widget (it writes into its progress bar and status line), so it cannot
    be called without one; this listener does the same drawing work through the same lower-level calls: the
    panel's figure (:func:`tl_lab.plots.training.empty_training_figure`), epochs queued as they arrive and drawn
    with :func:`~tl_lab.plots.training.append_epochs` at most once every ``interval`` seconds (the panel's
    throttle), and a last flush when training stops or ends. ``seconds`` is its own time inside fit's events.
    """

    def __init__(self, label: str = "bench", *, epochs: int | None = None, interval: float = 0.3) -> None:
        from tl_lab.plots.training import empty_training_figure

        self.figure = empty_training_figure(label, epochs=epochs)
        self.label, self.interval = label, interval
        self.pending: list[dict] = []
        self.last_draw = float("-inf")
        self.seconds = 0.0

    def __call__(self, event: Any) -> None:
        from tl_lab.training.events import EpochEnd, FitEnd, Stopped

        start = time.perf_counter()
        if isinstance(event, EpochEnd):
            self.pending.append(dict(event.metrics))
        final = isinstance(event, (FitEnd, Stopped))
        if self.pending and (final or time.monotonic() - self.last_draw >= self.interval):
            self.flush()
        self.seconds += time.perf_counter() - start

    def flush(self) -> None:
        from tl_lab.plots.training import append_epochs

        pending, self.pending = self.pending, []
        append_epochs(self.figure, pending, label=self.label)
        self.last_draw = time.monotonic()


def bench_panel(data, tmp: Path, *, epochs: int, repeats: int = 5) -> dict:
    """The TrainPanel's live-chart work during training (:class:`LiveChart` as a ``fit`` callback) vs a bare ``fit``.

    Measured through ``fit(callbacks=[LiveChart()])`` rather than by driving a widget: the panel's remaining
    work (a background thread, the runs table) happens outside ``fit`` and is the widgets' concern, not the
    training loop's. Kept under the JSON key ``panel`` for comparison with earlier reports.
    """
    from tl_lab.training.freeze import FreezePlan

    plan = FreezePlan(trainable_from="stage7")
    bare, charted = [], []
    for i in range(repeats):  # interleaved
        bare.append(_fit_case(f"bare fit {i}", data, tmp, plan=plan, epochs=epochs))
        chart = LiveChart(f"run {i}", epochs=epochs)
        record = _fit_case(f"live chart {i}", data, tmp, plan=plan, epochs=epochs, callbacks=[chart])
        record.update(points_drawn=len(chart.figure.data[-1].y or ()), callbacks_s=round(chart.seconds, 4))
        charted.append(record)
    result = {"cases": bare + charted, **_overhead(bare, charted), "target": "<= 5%"}
    # The end-to-end difference is smaller than the run-to-run noise on a shared CPU, so also report the chart's
    # own work, timed directly inside its callback.
    result["panel_work_s"] = round(statistics.median(r["callbacks_s"] for r in charted), 4)
    result["panel_work_pct"] = round(100 * result["panel_work_s"] / result["median_s"]["bare"], 2)
    return result


def bench_throughput(names: list[str], *, batch: int, size: int, iters: int, device: torch.device,
                     variants: list[tuple[bool, bool]] | None = None) -> list[dict]:
    """Images/s for forward passes and SGD training steps, per backbone and ``(amp, channels_last)`` variant.

    Default variants: fp32 on a CPU; on CUDA fp32, AMP, and AMP + channels_last. Rows of an AMP variant carry
    ``amp_gain`` (training images/s vs fp32) and rows of a channels_last variant ``channels_last_gain`` (vs the same
    precision without it).
    """
    from tl_lab.backbones.registry import get_spec, load_backbone

    rows = []
    if variants is None:
        variants = [(False, False)] if device.type != "cuda" else [(False, False), (True, False), (True, True)]
    for name in names:
        spec = get_spec(name)
        px = spec.input_size if spec.fixed_input_size else size
        bb = load_backbone(name, pretrained=spec.embedded, num_classes=10)
        model = bb.model.to(device)
        x = torch.randn(batch, 3, px, px, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        for amp, channels_last in variants:
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            def ctx() -> Any:  # a fresh context each time: it is entered once for forward, once per training step
                return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
            record = {"backbone": name, "device": str(device), "batch": batch, "image_size": px, "amp": amp,
                      "channels_last": channels_last, "weights": "pretrained" if spec.embedded else "random init"}
            try:
                with _measure(record):
                    model.eval()
                    with torch.no_grad(), ctx():
                        record["forward_img_s"] = round(_rate(lambda: model(x), batch, iters, device), 1)
                    model.train()
                    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

                    def step() -> None:
                        with ctx():
                            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()

                    record["train_img_s"] = round(_rate(step, batch, iters, device), 1)
            except torch.cuda.OutOfMemoryError:  # a small GPU: report it and go on with the next case
                record.update(forward_img_s=None, train_img_s=None, error=f"out of GPU memory at batch {batch}")
                torch.cuda.empty_cache()
            rows.append(record)
        _gains([r for r in rows if r["backbone"] == name])
        del model, bb
        gc.collect()
    return rows


def throughput_line(r: dict) -> str:
    """One printed row of the throughput table."""
    head = f"  {r['backbone']:<20} amp={r['amp']!s:<5} cl={r['channels_last']!s:<5}"
    if "error" in r:
        return f"{head} {r['error']}"
    gains = "".join(f"  {k} {r[k]}x" for k in ("amp_gain", "channels_last_gain") if k in r)
    cuda = f" / CUDA {r['peak_cuda_mb']} MB" if "peak_cuda_mb" in r else ""
    return (f"{head} forward {r['forward_img_s']:>8} img/s  train {r['train_img_s']:>8} img/s"
            f"  peak {r['peak_rss_mb']} MB{cuda}{gains}")


def _gains(rows: list[dict]) -> None:
    by = {(r["amp"], r["channels_last"]): r for r in rows if r["train_img_s"]}
    for (amp, cl), r in by.items():
        if amp and (False, cl) in by:
            r["amp_gain"] = round(r["train_img_s"] / by[(False, cl)]["train_img_s"], 2)
        if cl and (amp, False) in by:
            r["channels_last_gain"] = round(r["train_img_s"] / by[(amp, False)]["train_img_s"], 2)


def _rate(fn: Callable[[], Any], batch: int, iters: int, device: torch.device) -> float:
    for _ in range(3 if device.type == "cuda" else 1):  # warm-up (allocations, cuDNN autotune)
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - start)


def bench_peer(data, tmp: Path, *, tutorial_epochs: int, fine_tune_epochs: int) -> dict:
    """The PyTorch tutorial recipe (SGD 1e-3, momentum 0.9, StepLR(7, 0.1), batch 4, model in train mode)."""
    from tl_lab.training.freeze import FreezePlan

    tutorial = _fit_case("PyTorch tutorial recipe (fine-tune all, train-mode BN)", data, tmp,
                         plan=FreezePlan(trainable_from=None, bn="train"), optimizer="sgd", lr=1e-3, momentum=0.9,
                         weight_decay=0.0, schedule="step", step_size=7, gamma=0.1, epochs=tutorial_epochs,
                         batch_size=4, cache=False)
    head = _fit_case("tl_lab default: frozen head (cached)", data, tmp, plan=FreezePlan.frozen_head())
    fine = _fit_case("tl_lab fine_tune()", data, tmp, plan=FreezePlan.fine_tune(), epochs=fine_tune_epochs)
    return {"cases": [tutorial, head, fine],
            "time_ratio_tutorial_vs_frozen_head": round(tutorial["seconds"] / head["seconds"], 1),
            "time_ratio_tutorial_vs_fine_tune": round(tutorial["seconds"] / fine["seconds"], 2),
            "target": "tl_lab default at least as accurate in at most 1/20 of the tutorial's time"}


def run_bench(*, quick: bool = False, out: str | Path | None = "bench.json", echo: Callable[[str], None] = print) -> dict:
    from tl_lab.data.datasets import load_dataset
    from tl_lab.training.device import pick_device

    device = pick_device("auto")
    data = load_dataset("digits", shots=10, seed=0, image_size=64)
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
                    "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None},
        "data": "digits, 10 shots per class, 64 px; backbone efficientnet_lite0 (embedded ImageNet weights)",
        "quick": quick,
    }
    with tempfile.TemporaryDirectory(prefix="tl_lab_bench_") as tmpdir:
        tmp = Path(tmpdir)
        echo("cache: cached frozen prefix vs naive loop …")
        # 100 epochs is fit's default for a head on cached features; the ratio grows with epochs because the
        # one-off cache build (train + val + test forward passes) is what the cached run mostly spends.
        result["cache"] = bench_cache(data, tmp, epochs=10 if quick else 100)
        echo(f"  speedup {result['cache']['speedup']}x (accuracy gap {result['cache']['accuracy_gap']})")
        echo("callbacks: widget-style callback vs none …")
        result["callbacks"] = bench_callbacks(data, tmp, epochs=3 if quick else 10)
        echo(f"  overhead {result['callbacks']['overhead_pct']}%")
        echo("panel: the TrainPanel's live chart (as a fit callback) vs a bare fit …")
        result["panel"] = bench_panel(data, tmp, epochs=3 if quick else 10)
        echo(f"  overhead {result['panel']['overhead_pct']}%; the panel's own work {result['panel']['panel_work_pct']}%")
        names = ["efficientnet_lite0", "mobilenet_v3_small", "resnet18"]
        if not quick:
            names += ["resnet50", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny"]
        if device.type == "cuda":
            names += ["vgg11_bn", "vit_b_16"]
        echo(f"throughput on {device} …")
        size = 224 if device.type == "cuda" else 128
        batch = 64 if device.type == "cuda" else 16
        iters = (5 if quick else 20) if device.type == "cuda" else (2 if quick else 5)
        result["throughput"] = bench_throughput(names, batch=batch, size=size, iters=iters, device=device)
        for r in result["throughput"]:
            echo(throughput_line(r))
        echo("peer: PyTorch tutorial recipe vs tl_lab defaults …")
        result["peer"] = bench_peer(data, tmp, tutorial_epochs=5 if quick else 25, fine_tune_epochs=5 if quick else 30)
    _print_summary(result, echo)
    if out:
        Path(out).write_text(json.dumps(result, indent=1))
        echo(f"wrote {out}")
    return result


def _print_summary(result: dict, echo: Callable[[str], None]) -> None:
    echo("\n== tl-lab bench summary (" + result["machine"]["device"] + ")")
    c = result["cache"]
    echo(f"cached prefix vs naive loop ({c['epochs']} epochs): {c['speedup']}x faster, accuracy gap {c['accuracy_gap']} "
         f"(target >= 20x; at most {c['upper_bound']}x here: the naive loop's time over the cache build's)")
    for case in c["cases"]:
        parts = f"  (cache build {case['cache_build_s']:.2f} s, epochs {case['epochs_s']:.2f} s)" if case["cache_build_s"] else ""
        echo(f"   {case['case']:<28} {case['seconds']:>8.2f} s  test acc {case['test_acc']:.3f}  peak {case['peak_rss_mb']} MB{parts}")
    cb, pn = result["callbacks"], result["panel"]
    echo(f"widget-style callback overhead: {cb['overhead_pct']}% of median time (target <= 5%; "
         f"run-to-run spread {cb['noise_pct']}%)")
    echo(f"TrainPanel's live chart vs bare fit overhead: {pn['overhead_pct']}% of median time (run-to-run spread "
         f"{pn['noise_pct']}%); the chart's own work, timed: {pn['panel_work_s']} s = {pn['panel_work_pct']}% "
         f"(target <= 5%)")
    p = result["peer"]
    for case in p["cases"]:
        echo(f"   {case['case']:<55} {case['seconds']:>8.2f} s  test acc {case['test_acc']:.3f}  peak {case['peak_rss_mb']} MB")
    echo(f"tutorial recipe / tl_lab frozen head time: {p['time_ratio_tutorial_vs_frozen_head']}x")


def main(args: Any) -> int:
    """``tl-lab bench``: the speed ratios (unless ``--only-lessons``), then with ``--lessons`` every lesson, at full
    size or ``--fast``, once per ``--threads`` count, into ``bench_lessons.json`` beside ``--json``."""
    lessons = getattr(args, "lessons", False) or getattr(args, "only_lessons", False)
    if not getattr(args, "only_lessons", False):
        run_bench(quick=args.quick, out=args.json)
    if lessons:
        from tl_lab.app.lessons_bench import bench_lessons

        from tl_lab.app.lessons_bench import lesson_paths

        chosen = getattr(args, "lesson_numbers", None)
        paths = [p for p in lesson_paths() if not chosen or p.name[:2] in chosen]
        report = bench_lessons(paths, out=Path(args.json).with_name("bench_lessons.json"), fast=getattr(args, "fast", False),
                               threads=getattr(args, "threads", None), references=getattr(args, "references", False))
        return 0 if all(not r["error"] and r["checks_ok"] for r in report["lessons"]) else 1
    return 0

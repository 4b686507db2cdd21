"""``tl-lab bench``: speed measured side by side in one process, printed as ratios, written as JSON.

Benchmarks are not tests: they report what this machine does, so a teacher can check a class's hub and a
developer can see whether a change made tl_lab slower. Each case runs the compared variants one after the other in
the same process on the same data, and records wall time, accuracy where it applies, and peak resident memory
(plus peak CUDA memory on a GPU).

Cases:
- ``cache``: frozen-head training with the cached frozen prefix vs the naive loop (full forward every batch);
- ``callbacks``: ``fit`` with a do-nothing widget-style callback vs none;
- ``panel``: the same run started from a :class:`~tl_lab.widgets.TrainPanel` (thread, live chart, table) vs ``fit``;
- ``throughput``: images/s for forward passes and training steps per backbone available offline (CUDA: AMP and
  channels_last on/off);
- ``peer``: the PyTorch transfer-learning tutorial's recipe vs tl_lab's default frozen-head and fine-tune plans.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

__all__ = ["PeakMemory", "run_bench", "main"]


class PeakMemory:
    """Peak resident set size (MB) of this process while the block runs, sampled every 5 ms from /proc."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self.cuda_peak_mb: float | None = None
        self._stop = threading.Event()

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):  # not Linux: fall back to the lifetime peak
            import resource

            scale = 1 if platform.system() == "Darwin" else 1024
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak_mb = self.rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb())
        if torch.cuda.is_available():
            self.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20


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


def bench_panel(tmp: Path, *, epochs: int, repeats: int = 5) -> dict:
    """The same training started from a TrainPanel (background thread, live chart, table) vs a bare ``fit``."""
    from tl_lab.training.freeze import FreezePlan
    from tl_lab.widgets.train_panel import TrainPanel

    plan = FreezePlan(trainable_from="stage7")
    panel = TrainPanel(dataset="digits", shots=10, image_size=64, plan=plan, run_dir=tmp / "panel")
    panel.plan_choice.value = "custom"
    panel.epochs.value = epochs
    data = panel.state.data()
    panel._baseline(data)  # the raw-pixel baseline is computed once per dataset; keep it out of the timing
    bare, through_panel = [], []
    for i in range(repeats):  # interleaved
        bare.append(_fit_case(f"bare fit {i}", data, tmp, plan=plan, epochs=epochs))
        record: dict[str, Any] = {"case": f"TrainPanel {i}"}
        spent = _time_calls(panel, "_on_event")  # the panel's own work on the training thread
        with _measure(record):
            panel.train_button.click()
            run = panel.wait()
        del panel._on_event
        if panel.last_error is not None:
            raise RuntimeError(f"the TrainPanel run failed: {panel.last_error}") from panel.last_error
        # outside fit: starting the thread, then the runs table, final redraw and status after fit returned
        outside = record["seconds"] - run.timings["total_s"]
        record.update(test_acc=round(run.best.get("test_acc", float("nan")), 4), epochs=len(run.history),
                      cache=run.cache, points_drawn=len(panel.figure.data[-1].y or ()),
                      callbacks_s=round(spent[0], 4), outside_fit_s=round(outside, 4))
        through_panel.append(record)
    result = {"cases": bare + through_panel, **_overhead(bare, through_panel), "target": "<= 5%"}
    # The end-to-end difference is smaller than the run-to-run noise on a shared CPU, so also report the panel's
    # own work, timed directly: its event callbacks (chart and progress updates) plus what it does outside fit.
    added = statistics.median(r["callbacks_s"] + r["outside_fit_s"] for r in through_panel)
    result["panel_work_s"] = round(added, 4)
    result["panel_work_pct"] = round(100 * added / result["median_s"]["bare"], 2)
    return result


def _time_calls(obj: Any, method: str) -> list[float]:
    """Shadow ``obj.method`` with a wrapper that adds its wall time to the returned one-element list."""
    spent = [0.0]
    original = getattr(obj, method)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    setattr(obj, method, timed)
    return spent


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
        echo("panel: training through TrainPanel vs a bare fit …")
        result["panel"] = bench_panel(tmp, epochs=3 if quick else 10)
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
    echo(f"TrainPanel vs bare fit overhead: {pn['overhead_pct']}% of median time (run-to-run spread {pn['noise_pct']}%); "
         f"the panel's own work, timed: {pn['panel_work_s']} s = {pn['panel_work_pct']}% (target <= 5%)")
    p = result["peer"]
    for case in p["cases"]:
        echo(f"   {case['case']:<55} {case['seconds']:>8.2f} s  test acc {case['test_acc']:.3f}  peak {case['peak_rss_mb']} MB")
    echo(f"tutorial recipe / tl_lab frozen head time: {p['time_ratio_tutorial_vs_frozen_head']}x")


def main(args: Any) -> int:
    run_bench(quick=args.quick, out=args.json)
    if getattr(args, "lessons", False):
        from tl_lab.app.lessons_bench import bench_lessons

        bench_lessons(out=Path(args.json).with_name("bench_lessons.json"))
    return 0

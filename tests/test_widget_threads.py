"""Widget threads at interpreter exit: the exit waits for them, so PyTorch never aborts the process mid-forward."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.slow
def test_the_interpreter_waits_for_a_widget_thread_before_exiting(tmp_path):
    done = tmp_path / "done.txt"
    script = textwrap.dedent(f"""
        import time
        import torch
        from tl_lab.widgets.common import StatusLine, Worker

        def compute():
            x = torch.randn(64, 64)
            for _ in range(40):  # PyTorch work still running when the main thread ends
                x = torch.tanh(x @ x.T / 64)
                time.sleep(0.01)
            return float(x.sum())

        worker = Worker(StatusLine())
        worker.start("working", compute, lambda value: open({str(done)!r}, "w").write(repr(value)))
        print("main thread ends")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "main thread ends" in proc.stdout
    assert done.exists(), "the process exited before the worker's job finished"
    float(done.read_text())  # the job's result was written whole

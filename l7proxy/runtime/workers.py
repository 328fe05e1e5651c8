"""The worker processes of `serve` with `workers: N`: N-1 children beside the parent,
each a whole gateway on the same port (SO_REUSEPORT). The parent passes SIGHUP and
SIGTERM on, so every worker reloads and drains with it; their metrics meet in one
prometheus-client multiprocess directory, so whichever worker answers `/metrics` reports
the sum of all. Imports nothing of prometheus-client: the directory must be chosen first."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class Workers:
    def __init__(self, config_file: Path, count: int) -> None:
        self._metrics_dir: str | None = None
        if count > 1 and METRICS_DIR_VARIABLE not in os.environ:
            self._metrics_dir = tempfile.mkdtemp(prefix="l7proxy-metrics-")
            os.environ[METRICS_DIR_VARIABLE] = self._metrics_dir
        self._terminated = False
        self.children = [
            subprocess.Popen(
                [sys.executable, "-m", "l7proxy", "serve", "--config", str(config_file), "--worker"]
            )
            for _ in range(count - 1)
        ]

    def forward(self, signum: int) -> None:
        if signum == signal.SIGTERM:
            if self._terminated:
                return  # a second SIGTERM would stop them without draining
            self._terminated = True
        for child in self.children:
            child.send_signal(signum)

    def stop(self) -> None:
        """Have every child drain (unless told already), wait for them, and clean up."""
        self.forward(signal.SIGTERM)
        for child in self.children:
            child.wait()
        if self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

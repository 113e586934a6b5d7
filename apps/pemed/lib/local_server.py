"""Run this app under `monailabel start_server` on a free loopback port: for the end-to-end tests
and the server benchmark, which must not touch the checkout (the server writes into its app folder)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

import requests

APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_app(dest: str, checkpoint: Optional[str] = None) -> str:
    """A copy of apps/pemed at ``dest``, without training outputs; ``checkpoint`` becomes model/pemed.pt."""
    shutil.copytree(APP_DIR, dest, ignore=shutil.ignore_patterns("*_run", "__pycache__", "train_pemed", "train_curriculum_*", "train_promise",
                                                                 "*_finetuned.pt", "embeddings", "auto_names.json"))
    if checkpoint:
        os.makedirs(os.path.join(dest, "model"), exist_ok=True)
        shutil.copy(checkpoint, os.path.join(dest, "model", "pemed.pt"))
    return dest


class LocalServer:
    def __init__(self, app: str, studies: str, log_path: str, timeout_s: float = 180.0,
                 conf: Optional[Dict[str, str]] = None, port: int = 0, wrap: Sequence[str] = ()):
        self.app, self.studies, self.log_path, self.timeout_s = app, studies, log_path, timeout_s
        self.port = port  # 0: a free one
        self.conf = conf or {}
        self.wrap = list(wrap)  # a command the server runs under (e.g. unshare), its own command appended
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""

    def __enter__(self) -> "LocalServer":
        port = self.port
        if not port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.wrap + ["monailabel", "start_server", "--app", self.app, "--studies", self.studies,
                                      "--host", "127.0.0.1", "--port", str(port)]
                                     + [a for k, v in self.conf.items() for a in ("--conf", k, str(v))],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if requests.get(f"{self.url}/info/", timeout=2).status_code in (200, 401):  # 401: up, signed-in only
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(1)
        self.__exit__()
        with open(self.log_path) as f:
            raise RuntimeError(f"server did not come up at {self.url}:\n{f.read()[-3000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self._log.close()

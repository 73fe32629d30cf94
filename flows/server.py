"""`python -m flows.server`: a local Prefect server with its UI, for watching long runs.

Binds 127.0.0.1 on a free port (4200 is often taken), keeps its database in the project's
`.prefect/`, and writes `.prefect/server.json` so every `dvc repro` in this workspace reports to it
without exporting anything. Ctrl-C stops it and removes the file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pipeline  # noqa: F401  (sets PREFECT_HOME, analytics off)
from flows.server_address import SERVER_FILE, api_healthy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(port: int | None = None, timeout: float = 90.0, home: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server and wait until it answers; returns the process and the API URL.

    `home` overrides PREFECT_HOME (where the server keeps its database), e.g. a temporary folder.
    """
    port = port or free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": api}
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api_healthy(api):
            return process, api
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
    stop(process)
    raise TimeoutError(f"prefect server did not answer on {api} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> int:
    process, api = start()
    ui = api.removesuffix("/api")
    SERVER_FILE.parent.mkdir(parents=True, exist_ok=True)
    SERVER_FILE.write_text(json.dumps({"api_url": api, "ui_url": ui, "pid": process.pid}))
    print(f"Prefect UI: {ui}\nAPI: {api}\n`dvc repro` in {Path.cwd()} now reports every stage there. Ctrl-C stops it.",
          flush=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
        SERVER_FILE.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

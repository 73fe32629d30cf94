"""Where a result came from: commit, params, input hashes, command, machine and date.

Every `benchmarks/results/*.json` and every `metrics/<model>/eval.json` carries this block, so a
number can always be traced back to the code and the data that produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
# The block's keys, in order; merged or combined result files copy exactly these per run.
KEYS = ("commit", "dirty", "params", "inputs", "command", "machine", "date")


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(root: Path = PROJECT) -> dict[str, Any]:
    """The commit checked out at `root` and whether tracked files differ from it (None outside git)."""
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def machine() -> str:
    """One line naming the hardware a timing was taken on (timings differ by CPU model, not just core count)."""
    cpu = _cpu_model()
    parts = [f"{platform.machine()} ({cpu})" if cpu else platform.machine(), f"{os.cpu_count()} CPU cores"]
    try:
        import psutil

        parts.append(f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM")
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
        else:
            parts.append("no GPU")
    except ImportError:
        pass
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


def _dvc_lock(stage: str, root: Path, kind: str) -> dict[str, str]:
    lock = root / "dvc.lock"
    if not lock.exists():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    entry = stages.get(stage) or {}
    return {item["path"]: item.get("md5") or item.get("hash", "") for item in entry.get(kind, [])}


def dvc_lock_inputs(stage: str, root: Path = PROJECT) -> dict[str, str]:
    """md5 of each dependency of `stage` as DVC recorded it in `dvc.lock` (empty when not locked)."""
    return _dvc_lock(stage, root, "deps")


def dvc_lock_outputs(stage: str, root: Path = PROJECT) -> dict[str, str]:
    """md5 of each output of `stage` in `dvc.lock`: what a later step read (e.g. the checkpoints evaluate scores)."""
    return _dvc_lock(stage, root, "outs")


def file_md5(path: Path) -> str:
    """md5 of a file; of a folder, md5 over its files' sorted `relative-path md5` lines (one hash per input)."""
    if path.is_file():
        digest = hashlib.md5()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    lines = [f"{f.relative_to(path).as_posix()} {file_md5(f)}" for f in sorted(path.rglob("*")) if f.is_file()]
    return hashlib.md5("\n".join(lines).encode()).hexdigest()


def file_inputs(paths: Iterable[Path], root: Path = PROJECT) -> dict[str, str]:
    """md5 of each input a benchmark reads outside DVC, keyed by its path (relative to `root` when inside it)."""
    return {_relative(Path(p), root): file_md5(Path(p)) for p in paths}


def now() -> str:
    """The date format of every result file: minutes, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def provenance(
    params: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    command: Sequence[str] | str | None = None,
    root: Path = PROJECT,
) -> dict[str, Any]:
    """The block every result file starts with; `command` defaults to this process's own."""
    if command is None:
        script = Path(sys.argv[0])
        head = ["-m", script.parent.name] if script.name == "__main__.py" else [_relative(script, root)]
        command = [*head, *sys.argv[1:]]
    if not isinstance(command, str):
        command = shlex.join(["python", *command])
    return {
        **git_state(root),
        "params": dict(params or {}),
        "inputs": dict(inputs or {}),
        "command": command,
        "machine": machine(),
        "date": now(),
    }


def write_result(folder: str | Path, name: str, result: Mapping[str, Any]) -> Path:
    """`<folder>/<name>` as indented JSON (the form every `benchmarks/results/*.json` is committed in)."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path

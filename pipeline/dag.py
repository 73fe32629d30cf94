"""`python -m pipeline.dag`: the parts of `dvc.yaml` that follow from `params.yaml`, written and checked.

DVC cannot interpolate a list into `deps`, so `foreach: ${models}` could only make every model stage
depend on the whole `data/features` folder: swapping the audio extractor then reran text-only and
face-only models. Instead, the `train`, `evaluate`, `refine` and `evaluate_refined` stages loop over an
inline mapping written here from `params.yaml`: one entry per model (or refinement) holding its
feature keys in numbered slots (`in1`, `in2`, ...), and the `do` template depends on
`data/features/${item.inN}.parquet` for each slot. A model with fewer inputs than slots repeats its
last key (DVC accepts a repeated dependency), so every model depends on exactly the files it reads.
Likewise `speaker` depends on `artifacts/lipsyncnet` and the `lipsync` scoring params only when
`speaker.method` reads LipSyncNet, so `first_face` never waits for `lipsync_train`.

One job, writing and checking the generated parts of `dvc.yaml`, which is why it runs past 400 lines:
the per-stage code deps (the import closure of each stage's module), the per-model foreach items and
the speaker stage's conditional deps are written and checked by the same functions.

    python -m pipeline.dag           # rewrite dvc.yaml where params.yaml changed what a stage reads
    python -m pipeline.dag --check   # exit 1, naming every difference, when dvc.yaml is out of sync

Every stage started by DVC checks the same thing before any work (`pipeline.params_check`): a missing
dependency (results that would silently go stale) fails at once; one the stage does not need only
costs reruns and is a warning.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline import logs, paths
from pipeline.config import ConfigError, load_params
from pipeline.speaker_methods import LEARNED_METHODS

FEATURES_DIR = "data/features"
MODELS_DIR = "artifacts/models"
LIPSYNC_DIR = paths.LIPSYNC_DIR.as_posix()
LIPSYNC_PARAMS = ("lipsync.max_offset", "lipsync.search_offset", "lipsync.score", "lipsync.device")
MODEL_STAGES = {"train": "models", "evaluate": "models", "refine": "refine", "evaluate_refined": "refine"}
SLOT = "in{}"
log = logging.getLogger("pipeline.dag")  # also when run as __main__
FIX = "run `python -m pipeline.dag` (or `make dag`) to rewrite dvc.yaml from params.yaml, then `dvc repro` again"


# ---------------------------------------------------------------- what params.yaml says each stage reads


def _keys(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(k, str) and k for k in value):
        raise ConfigError(f"params.yaml: '{where}' must be a non-empty list of feature keys, got {value!r}")
    return list(dict.fromkeys(value))


def model_inputs(params: Mapping[str, Any]) -> dict[str, list[str]]:
    """Feature keys each `models.<name>` block reads (`inputs`)."""
    models = params.get("models") or {}
    if not isinstance(models, Mapping):
        raise ConfigError("params.yaml: 'models' must map model names to blocks")
    return {str(name): _keys((block or {}).get("inputs"), f"models.{name}.inputs") for name, block in models.items()}


def refine_inputs(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per `refine.<name>` block: the two models it refines and the union of their feature keys."""
    blocks = params.get("refine") or {}
    if not isinstance(blocks, Mapping):
        raise ConfigError("params.yaml: 'refine' must map names to refinement blocks")
    inputs = model_inputs(params)
    found: dict[str, dict[str, Any]] = {}
    for name, block in blocks.items():
        roles = {}
        for role in ("multimodal", "text"):
            target = (block or {}).get(role)
            if target not in inputs:
                raise ConfigError(f"params.yaml: 'refine.{name}.{role}' is {target!r}; it must name a model: "
                                  f"{', '.join(inputs)}")
            roles[role] = str(target)
        keys = list(dict.fromkeys(inputs[roles["multimodal"]] + inputs[roles["text"]]))
        found[str(name)] = {**roles, "inputs": keys}
    return found


def foreach_items(params: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The inline `foreach` mapping of each model stage: name -> {in1: key, in2: key, ...} (padded)."""
    families: dict[str, dict[str, tuple[dict[str, Any], list[str]]]] = {
        "models": {name: ({}, keys) for name, keys in model_inputs(params).items()},
        "refine": {name: ({"multimodal": r["multimodal"], "text": r["text"]}, r["inputs"])
                   for name, r in refine_inputs(params).items()},
    }
    items: dict[str, dict[str, dict[str, Any]]] = {}
    for family, entries in families.items():
        slots = max((len(keys) for _, keys in entries.values()), default=1)
        items[family] = {name: {**fixed, **{SLOT.format(i + 1): keys[min(i, len(keys) - 1)] for i in range(slots)}}
                         for name, (fixed, keys) in entries.items()}
    return {stage: items[family] for stage, family in MODEL_STAGES.items()}


def speaker_reads_lipsync(params: Mapping[str, Any]) -> bool:
    return (params.get("speaker") or {}).get("method", "auto") in LEARNED_METHODS


# ---------------------------------------------------------------- comparing with dvc.yaml


@dataclass
class Drift:
    """How `dvc.yaml` differs from `params.yaml`: `missing` makes results stale, `extra` only costs reruns."""

    missing: dict[str, list[str]] = field(default_factory=dict)  # stage -> problems
    extra: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, stage: str, problem: str) -> None:
        getattr(self, kind).setdefault(stage, []).append(problem)

    def lines(self, stages: Iterable[str] | None = None, kinds: Iterable[str] = ("missing", "extra")) -> list[str]:
        wanted = None if stages is None else set(stages)
        return [f"{stage}: {problem}" for kind in kinds for stage, problems in getattr(self, kind).items()
                if wanted is None or stage in wanted for problem in problems]

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra)


_ITEM = re.compile(r"\$\{\s*item\.([A-Za-z0-9_]+)\s*\}")
_KEY = re.compile(r"\$\{\s*key\s*\}")


def _dep_path(dep: Any) -> str:
    return str(next(iter(dep)) if isinstance(dep, Mapping) else dep)


def _resolved_deps(template: Mapping[str, Any], key: str, item: Any) -> list[str]:
    """The `do` template's deps for one entry (`${item.x}` and `${key}` filled, other variables left)."""
    def fill(text: str) -> str:
        if isinstance(item, Mapping):
            text = _ITEM.sub(lambda m: str(item.get(m.group(1), m.group(0))), text)
        return _KEY.sub(key, text)

    return [fill(_dep_path(dep)).rstrip("/") for dep in template.get("deps") or []]


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep + "/")


def _compare_features(drift: Drift, stage: str, deps: list[str], keys: list[str], where: str) -> None:
    needed = [f"{FEATURES_DIR}/{k}.parquet" for k in keys]
    for key, path in zip(keys, needed):
        if not any(_covers(dep, path) for dep in deps):
            drift.add("missing", stage, f"does not depend on {path}, which {where} reads ({key!r})")
    for dep in dict.fromkeys(deps):
        if _covers(FEATURES_DIR, dep) and dep not in needed:
            what = "the whole data/features folder" if dep == FEATURES_DIR else dep
            drift.add("extra", stage, f"depends on {what}, but {where} reads only {', '.join(keys)}")


def compare(params: Mapping[str, Any], dvc: Mapping[str, Any]) -> Drift:
    """What `dvc.yaml` (parsed) is missing or has in excess, stage by stage, against `params.yaml`."""
    drift = Drift()
    stages = dvc.get("stages") or {}
    models = model_inputs(params)
    refined = refine_inputs(params)
    for family, family_block in MODEL_STAGES.items():
        spec = stages.get(family)
        if not isinstance(spec, Mapping) or not isinstance(spec.get("foreach"), Mapping):
            drift.add("missing", family, f"dvc.yaml has no `foreach` mapping written from params.yaml "
                                         f"(found {None if spec is None else spec.get('foreach')!r})")
            continue
        wanted = models if family_block == "models" else refined
        entries = spec["foreach"]
        for name in wanted:
            if name not in entries:
                drift.add("missing", f"{family}@{name}", f"no such stage, but params.yaml has {family_block}.{name}")
        for name, item in entries.items():
            stage = f"{family}@{name}"
            if name not in wanted:
                drift.add("missing", stage, f"params.yaml has no {family_block}.{name}: the stage would fail")
                continue
            deps = _resolved_deps(spec.get("do") or {}, str(name), item)
            if family_block == "models":
                _compare_features(drift, stage, deps, models[name], f"models.{name}.inputs")
                continue
            spec_r = refined[name]
            where = f"refine.{name} (models {spec_r['multimodal']} and {spec_r['text']})"
            _compare_features(drift, stage, deps, spec_r["inputs"], where)
            if family == "refine":
                for role in ("multimodal", "text"):
                    path = f"{MODELS_DIR}/{spec_r[role]}"
                    if path not in deps:
                        drift.add("missing", stage, f"does not depend on {path}, refine.{name}.{role}")
    speaker = stages.get("speaker")
    if isinstance(speaker, Mapping):
        method = (params.get("speaker") or {}).get("method", "auto")
        deps = [_dep_path(d).rstrip("/") for d in speaker.get("deps") or []]
        tracked = {str(p) for p in speaker.get("params") or [] if isinstance(p, str)}
        has_dir = LIPSYNC_DIR in deps
        if speaker_reads_lipsync(params):
            if not has_dir:
                drift.add("missing", "speaker",
                          f"does not depend on {LIPSYNC_DIR}, which speaker.method {method} reads")
            for key in LIPSYNC_PARAMS:
                if key not in tracked and "lipsync" not in tracked:
                    drift.add("missing", "speaker", f"does not track param {key}, which speaker.method {method} reads")
        else:
            if has_dir:
                drift.add("extra", "speaker", f"depends on {LIPSYNC_DIR} (so waits for lipsync_train), "
                                              f"which speaker.method {method} never reads")
            for key in sorted(tracked & set(LIPSYNC_PARAMS)):
                drift.add("extra", "speaker", f"tracks param {key}, which speaker.method {method} never reads")
    return drift


def check(params: Mapping[str, Any], dvc_yaml: Path, stage: str | None = None) -> list[str]:
    """Fail (ConfigError) when `dvc.yaml` misses a dependency `params.yaml` implies; return the stage's
    needless dependencies as warnings (all stages' when `stage` is None)."""
    try:
        dvc = yaml.safe_load(Path(dvc_yaml).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{dvc_yaml}: cannot read it to check it against params.yaml: {error}") from error
    drift = compare(params, dvc)
    if drift.missing:
        problems = "\n  ".join(drift.lines(kinds=("missing",)))
        raise ConfigError(f"dvc.yaml is out of sync with params.yaml:\n  {problems}\n{FIX}")
    name = None if stage is None else stage.rsplit(":", 1)[-1]  # `sub/dvc.yaml:train@x` -> `train@x`
    extra = drift.lines(None if name is None else [name], kinds=("extra",))
    return [f"dvc.yaml: {line} ({FIX})" for line in extra]


def under_dvc() -> tuple[Path, str] | None:
    """`(dvc.yaml, stage)` when DVC started this process (it sets DVC_ROOT and DVC_STAGE), else None."""
    root, stage = os.environ.get("DVC_ROOT"), os.environ.get("DVC_STAGE")
    if not root or not stage:
        return None
    where, _, _ = stage.rpartition(":")
    return Path(root) / (where or "dvc.yaml"), stage


# ---------------------------------------------------------------- rewriting dvc.yaml


def _round_trip() -> Any:
    from ruamel.yaml import YAML

    handler = YAML()
    handler.indent(mapping=2, sequence=4, offset=2)  # dvc.yaml's own layout: rewrites touch only what changed
    handler.width = 4096
    handler.preserve_quotes = True
    return handler


def _flow(mapping: Mapping[str, Any]) -> Any:
    from ruamel.yaml.comments import CommentedMap

    entry = CommentedMap(mapping)
    entry.fa.set_flow_style()
    return entry


def _set_feature_slots(deps: Any, slots: int) -> None:
    """Replace every `data/features...` dep of a `do` template by one dep per slot, where the first was."""
    found = [i for i, dep in enumerate(deps) if _covers(FEATURES_DIR, _dep_path(dep).split("${")[0].rstrip("/"))]
    at = found[0] if found else min(1, len(deps))
    for index in reversed(found):
        del deps[index]
    for i in reversed(range(slots)):
        deps.insert(at, f"{FEATURES_DIR}/${{item.{SLOT.format(i + 1)}}}.parquet")


def _set_speaker(speaker: Any, needs_lipsync: bool) -> None:
    deps = speaker["deps"]
    paths = [_dep_path(d).rstrip("/") for d in deps]
    if needs_lipsync and LIPSYNC_DIR not in paths:
        after = max((i for i, p in enumerate(paths) if p.startswith("data/")), default=len(paths) - 1)
        deps.insert(after + 1, LIPSYNC_DIR)
    if not needs_lipsync and LIPSYNC_DIR in paths:
        del deps[paths.index(LIPSYNC_DIR)]
    tracked = speaker.get("params")
    if tracked is None:
        from ruamel.yaml.comments import CommentedSeq

        tracked = speaker["params"] = CommentedSeq()
    for key in LIPSYNC_PARAMS:
        if needs_lipsync and key not in tracked and "lipsync" not in tracked:
            tracked.append(key)
        if not needs_lipsync and key in tracked:
            tracked.remove(key)


def stage_modules(cmd: str) -> list[str]:
    """The project modules a stage's command runs: `python -m pipeline <stage>` runs the stage's module."""
    import shlex

    from pipeline.stages import STAGE_MODULES

    modules = []
    for command in str(cmd).split("&&"):
        words = shlex.split(command)
        if words[1:2] != ["-m"] or len(words) < 3:
            continue
        modules.append(STAGE_MODULES.get(words[3], words[3]) if words[2] == "pipeline" and len(words) > 3
                       else words[2])
    return modules


def code_files(modules: Iterable[str]) -> list[str]:
    """Every project source file `modules` import, transitively (the files a stage's result depends on)."""
    from pipeline.code_fingerprint import PACKAGES, PROJECT_ROOT, module_closure, module_path

    modules = [m for m in modules if m.split(".")[0] in PACKAGES]
    return sorted({module_path(name).relative_to(PROJECT_ROOT).as_posix() for name in module_closure(*modules)}) \
        if modules else []


def _is_code(dep: str) -> bool:
    from pipeline.code_fingerprint import PACKAGES

    return dep.split("/")[0] in PACKAGES and "${" not in dep


def _set_code_deps(deps: Any, cmd: str) -> None:
    """Replace a stage's source-file deps by every file its command imports (folders it names are kept:
    code found at run time, such as registered models and extractors, is not in the import graph)."""
    files = code_files(stage_modules(cmd))
    if not files:
        return
    for index in reversed(range(len(deps))):
        dep = _dep_path(deps[index]).rstrip("/")
        if _is_code(dep) and dep.endswith(".py"):
            del deps[index]
    folders = [_dep_path(d).rstrip("/") for d in deps if _is_code(_dep_path(d).rstrip("/"))]
    deps.extend(f for f in files if not any(_covers(folder, f) for folder in folders))


def render(text: str, params: Mapping[str, Any]) -> str:
    """`dvc.yaml`'s text with the params-dependent parts rewritten; everything else byte for byte."""
    handler = _round_trip()
    doc = handler.load(text)
    stages = doc.get("stages") if doc else None
    if not stages:
        raise ConfigError("dvc.yaml has no stages")
    items = foreach_items(params)
    for stage, entries in items.items():
        spec = stages.get(stage)
        if spec is None or "do" not in spec:
            raise ConfigError(f"dvc.yaml has no `{stage}` foreach stage to write; restore it from the repository")
        from ruamel.yaml.comments import CommentedMap

        spec["foreach"] = CommentedMap((name, _flow(item)) for name, item in entries.items())
        slots = max((sum(k.startswith("in") and k[2:].isdigit() for k in item) for item in entries.values()),
                    default=1)
        _set_feature_slots(spec["do"]["deps"], slots)
    if "speaker" in stages:
        _set_speaker(stages["speaker"], speaker_reads_lipsync(params))
    for spec in stages.values():
        body = spec.get("do", spec)
        if "cmd" in body and body.get("deps") is not None:
            _set_code_deps(body["deps"], body["cmd"])
    out = io.StringIO()
    handler.dump(doc, out)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when dvc.yaml is out of sync")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dvc-yaml", default="dvc.yaml")
    options = parser.parse_args(argv)
    logs.configure()
    dvc_yaml = Path(options.dvc_yaml)
    try:
        params = load_params(options.params)
        if options.check:
            text = dvc_yaml.read_text()
            drift = compare(params, yaml.safe_load(text) or {})
            if drift:
                log.error("dvc.yaml is out of sync with params.yaml:\n  %s\n%s", "\n  ".join(drift.lines()), FIX)
                return 1
            if render(text, params) != text:
                log.error("dvc.yaml's code deps differ from what its stages import\n%s", FIX)
                return 1
            print(f"{dvc_yaml} is in sync with {options.params}")
            return 0
        before = dvc_yaml.read_text()
        drift = compare(params, yaml.safe_load(before) or {})
        after = render(before, params)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        return 2
    if after == before:
        print(f"{dvc_yaml} already matches {options.params}")
        return 0
    dvc_yaml.write_text(after)
    changes = drift.lines() or ["layout of the generated blocks"]
    print(f"rewrote {dvc_yaml} from {options.params}:\n  " + "\n  ".join(changes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

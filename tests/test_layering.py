"""The rooms and doors of ARCHITECTURE.md, read from the sources (imports anywhere in a module count).

`pipeline/` may import `extractors/`, `models/` and `core/`; `flows/` imports `pipeline/`;
`extractors/` and `models/` import neither `pipeline/` nor `flows/`; `core/` imports no project
package; nothing outside `flows/` imports Prefect or `flows/`; a stage never imports another stage
(what two stages share lives in a shared module); there is no import cycle. And every project module
a stage's command runs is among that stage's `dvc.yaml` deps, so DVC reruns it when its code changes.
"""

from __future__ import annotations

import graphlib
import shlex
from pathlib import Path

import pytest

from pipeline.code_fingerprint import PACKAGES, imports_of, module_closure, module_path
from pipeline.stages import STAGE_MODULES

PROJECT = Path(__file__).resolve().parents[1]
STAGES = "pipeline.stages"


def project_modules() -> list[str]:
    names = []
    for package in sorted(PACKAGES):
        for path in sorted((PROJECT / package).rglob("*.py")):
            parts = path.relative_to(PROJECT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = project_modules()


def project_imports(name: str) -> set[str]:
    return {n for n in imports_of(name, PROJECT) if module_path(n, PROJECT) is not None} - {name}


def top_levels(name: str) -> set[str]:
    return {n.split(".")[0] for n in imports_of(name, PROJECT)}


def in_package(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_project_has_the_packages_it_declares():
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES)
    assert "pipeline.stages.cut" in MODULES and "core.device" in MODULES


def test_no_import_cycle():
    graph = {name: project_imports(name) for name in MODULES}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


def test_no_stage_imports_another_stage():
    found = [f"{name} imports {other}" for name in MODULES if in_package(name, STAGES) and name != STAGES
             for other in sorted(project_imports(name)) if in_package(other, STAGES)]
    assert not found, "stages share code through shared modules, never through each other:\n" + "\n".join(found)


def test_only_flows_imports_prefect_or_flows():
    found = [f"{name} imports {', '.join(sorted(top_levels(name) & {'prefect', 'flows'}))}" for name in MODULES
             if not in_package(name, "flows") and top_levels(name) & {"prefect", "flows"}]
    found += [f"{name} imports {top}" for name in MODULES if not in_package(name, "flows")
              for top in sorted(top_levels(name)) if top.startswith("prefect_")]
    assert not found, "\n".join(found)


def test_models_and_extractors_import_neither_pipeline_nor_flows():
    found = [f"{name} imports {other}" for name in MODULES if in_package(name, "models", "extractors")
             for other in sorted(project_imports(name)) if in_package(other, "pipeline", "flows")]
    assert not found, "\n".join(found)


def test_core_imports_no_other_project_package():
    found = [f"{name} imports {other}" for name in MODULES if in_package(name, "core")
             for other in sorted(project_imports(name)) if not in_package(other, "core")]
    assert not found, "\n".join(found)


# -------------------------------------------------------------------------------- dvc.yaml deps


def stage_commands() -> dict[str, tuple[list[str], list[str]]]:
    """DVC's own reading of dvc.yaml: stage (foreach items resolved) -> (modules its cmd runs, its deps)."""
    from dvc.repo import Repo

    found = {}
    with Repo(str(PROJECT)) as repo:
        for stage in repo.index.stages:
            modules = []
            for command in str(stage.cmd).split("&&"):
                words = shlex.split(command)
                if words[1:2] != ["-m"]:
                    continue
                module = words[2]
                modules.append(STAGE_MODULES[words[3]] if module == "pipeline" else module)
            found[stage.addressing] = modules, [str(dep.def_path).rstrip("/") for dep in stage.deps]
    return found


COMMANDS = stage_commands()


def uncovered(modules: list[str], deps: list[str]) -> list[str]:
    files = sorted({module_path(name, PROJECT).relative_to(PROJECT).as_posix() for name in module_closure(*modules)})
    return [f for f in files if not any(f == dep or f.startswith(dep + "/") for dep in deps)]


@pytest.mark.parametrize("stage", sorted(COMMANDS))
def test_every_module_a_stage_runs_is_among_its_deps(stage):
    modules, deps = COMMANDS[stage]
    assert modules, f"{stage}: its cmd runs no project module"
    missing = uncovered(modules, deps)
    assert not missing, f"dvc.yaml: {stage} runs code it does not depend on (edits would not rerun it):\n  " + \
        "\n  ".join(missing)


def test_a_dep_folder_covers_its_files_and_a_file_only_itself():
    assert uncovered(["pipeline.stages.failures"], ["pipeline", "core"]) == []
    missing = uncovered(["pipeline.stages.failures"], ["pipeline/stages/failures.py"])
    assert "pipeline/ledger.py" in missing and "pipeline/stages/failures.py" not in missing

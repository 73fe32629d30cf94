"""Every params block rejects unknown keys before any work, naming the key and the allowed ones."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.params_check import check_params
from tests.conftest import PROJECT

# (where the typo goes, the message must name it and list an allowed key beside it)
TYPOS = [
    (("dataset",), "nmae", "'dataset.nmae'", "root"),
    (("dataset", "demo"), "dialogs", "'dataset.demo.dialogs'", "dialogues"),
    (("dataset", "demo", "cue_fidelity"), "txt", "'dataset.demo.cue_fidelity.txt'", "text"),
    (("dataset", "iemocap"), "dev_dialogue", "'dataset.iemocap.dev_dialogue'", "dev_dialogues"),
    (("dataset", "table"), "pth", "'dataset.table.pth'", "path"),
    (("cut",), "sample_rte", "'cut.sample_rte'", "sample_rate"),
    (("faces",), "sample_fsp", "'faces.sample_fsp'", "sample_fps"),
    (("lipsync",), "stepz", "'lipsync.stepz'", "steps"),
    (("lipsync", "augment"), "flipp", "'lipsync.augment.flipp'", "flip"),
    (("lipsync", "model"), "windw", "lipsync.model", "windw"),
    (("speaker",), "metod", "'speaker.metod'", "method"),
    (("features", "audio"), "featureset", "'features.audio.featureset'", "feature_set"),
    (("features", "visual"), "frame", "'features.visual.frame'", "frames"),
    (("finetune_text",), "epoch", "'finetune_text.epoch'", "epochs"),
    (("models", "lfvd"), "hiden", "'models.lfvd'", "hidden"),
    (("models", "text_gru"), "dropuot", "'models.text_gru'", "dropout"),
    (("train",), "seed", "'train.seed'", "seeds"),
    (("refine", "mrd"), "alpa", "'refine.mrd.alpa'", "alpha"),
    (("run",), "worker", "'run.worker'", "workers"),
    ((), "feature", "'feature'", "features"),
]


@pytest.mark.parametrize("where, key, named, allowed", TYPOS, ids=[".".join(t[0] + (t[1],)) for t in TYPOS])
def test_an_unknown_key_in_any_block_is_a_config_error(base_params, where, key, named, allowed):
    params = copy.deepcopy(base_params)
    node = params
    for part in where:
        node = node.setdefault(part, {})
    node[key] = 1
    with pytest.raises(ConfigError) as caught:
        check_params(params)
    assert named in str(caught.value) and allowed in str(caught.value)


def test_the_project_params_pass(base_params):
    check_params(base_params)


def test_a_stage_refuses_a_typo_before_any_work(tmp_path, base_params):
    params = copy.deepcopy(base_params)
    params["faces"]["sample_fsp"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run([sys.executable, "-m", "pipeline", "faces"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(PROJECT), "PIPELINE_ORCHESTRATOR": "plain", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert "unknown key 'faces.sample_fsp'" in done.stderr and "sample_fps" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing read, nothing written


# (block path, key, bad value, words the message must hold): values are checked at the start too
BAD_VALUES = [
    (("cut",), "max_seconds", 0, "'cut.max_seconds' must be a positive number, got 0"),
    (("cut",), "min_seconds", "short", "'cut.min_seconds' must be a number, got 'short'"),
    (("faces",), "batch_size", 0, "'faces.batch_size' must be a positive integer, got 0"),
    (("faces",), "max_gap", 1.5, "'faces.max_gap' must be an integer, got 1.5"),
    (("speaker",), "method", "bogus", "'speaker.method' is 'bogus'; allowed values: auto, lipsyncnet"),
    (("dataset",), "name", "voxceleb", "'dataset.name' is 'voxceleb'; allowed values: demo, meld, iemocap, table"),
    (("run",), "max_failure_ratio", "half", "'run.max_failure_ratio' must be a number in [0, 1], got 'half'"),
    (("features", "audio"), "level", "x", "'features.audio.level' is 'x'; allowed values: functionals, lld"),
    ((), "faces", None, "'faces' must be a mapping with keys device, sample_fps"),
    (("train",), "seeds", [0, 0], "'train.seeds' lists a seed twice"),
    (("train",), "lr", 0, "'train.lr' must be a positive number, got 0"),
    (("train",), "device", "gpu", "'train.device' is 'gpu'; allowed values: auto, cpu"),
    (("lipsync",), "max_shift", 2, "'lipsync.max_shift' must be >= min_shift (5), got 2"),
    (("lipsync",), "score", "best", "'lipsync.score' is 'best'; allowed values: sync, distance"),
    (("lipsync", "augment"), "flip", 2, "'lipsync.augment.flip' must be a number in [0, 1], got 2"),
    (("finetune_text",), "warmup", 2, "'finetune_text.warmup' must be a number in [0, 1], got 2"),
    (("models", "drkf"), "sequence_inputs", ["text_seq"], "must list every input"),
    (("models", "text_gru"), "speaker_normalise", ["audio"], "'models.text_gru.speaker_normalise' names ['audio']"),
    (("models", "text_gru"), "folds", "speaker", "'models.text_gru.folds' is 'speaker'; allowed values: session"),
    (("models", "text_gru"), "fold_dev_fraction", 1, "'models.text_gru.fold_dev_fraction' must be a number in (0, 1)"),
    (("models", "text_gru"), "loss_weights", {"ce": -1}, "'models.text_gru.loss_weights.ce' must be a number >= 0"),
    (("models", "text_gru"), "kind", "gru9", "'models.text_gru.kind' is 'gru9'"),
    (("refine", "mrd"), "text", "fusion_gru", "'refine.mrd.text' must name a different model from 'multimodal'"),
    (("refine", "mrd", "curriculum"), "r0", 0, "'refine.mrd.curriculum.r0' must be a number in (0, 1]"),
]


@pytest.mark.parametrize("where, key, value, words", BAD_VALUES, ids=[".".join(b[0] + (b[1],)) for b in BAD_VALUES])
def test_a_bad_value_in_a_declared_block_is_a_config_error_at_the_start(base_params, where, key, value, words):
    params = copy.deepcopy(base_params)
    node = params
    for part in where:
        node = node[part]
    node[key] = value
    with pytest.raises(ConfigError) as caught:
        check_params(params)
    assert words in str(caught.value)


def test_a_missing_required_key_is_named(base_params):
    params = copy.deepcopy(base_params)
    del params["cut"]["min_seconds"]
    with pytest.raises(ConfigError, match="missing key 'cut.min_seconds'"):
        check_params(params)


def test_the_wiring_keys_models_never_receive_are_the_ones_model_wiring_parses():
    import dataclasses

    from models.registry import NON_HYPER_KEYS
    from pipeline.training.config import ModelWiring

    assert {f.name for f in dataclasses.fields(ModelWiring)} == set(NON_HYPER_KEYS)


def test_a_misspelt_loss_weight_is_named_with_the_model_s_losses(base_params):
    params = copy.deepcopy(base_params)
    params["models"]["cmath"]["loss_weights"] = {"distil_logit": 1.2}  # distill_logit
    with pytest.raises(ConfigError, match=r"models\.cmath\.loss_weights.*'distil_logit'.*distill_logit"):
        check_params(params)
    params = copy.deepcopy(base_params)
    params["models"]["text_gru"]["train"] = {"loss_weights": {"reconstruction": 1.0}}  # not a context_gru loss
    with pytest.raises(ConfigError, match=r"models\.text_gru\.train\.loss_weights.*'reconstruction'"):
        check_params(params)
    params = copy.deepcopy(base_params)
    params["train"]["loss_weights"] = {"reconstruction": 0.5}  # a loss of cmath: fine as a shared weight
    check_params(params)
    params["train"]["loss_weights"] = {"nothing_at_all": 0.5}
    with pytest.raises(ConfigError, match=r"train\.loss_weights.*'nothing_at_all'"):
        check_params(params)


def test_a_model_s_train_overrides_are_checked_before_any_work(base_params):
    params = copy.deepcopy(base_params)
    params["models"]["lfvd"]["train"] = {"optimiser": "adam"}  # optimizer
    with pytest.raises(ConfigError, match=r"models\.lfvd\.train.*optimiser"):
        check_params(params)
    params["models"]["lfvd"]["train"] = {"optimizer": "adam", "device": "cuda"}  # a GPU need not be here to check
    check_params(params)

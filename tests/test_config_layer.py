"""`core.config.parse_block`: one typed check for every params block, naming the full params path."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from core.config import ConfigError, as_block, parse_block, recorded, setting
from pipeline.config import ConfigError as PipelineConfigError


@dataclass(frozen=True)
class Augment:
    flip: bool = True
    noise: float = setting(0.0, min=0.0, max=1.0)


@dataclass(frozen=True)
class Block:
    level: str = setting("functionals", choices=("functionals", "lld"))
    steps: int = setting(10, min=1)
    rate: float = setting(0.5, above=0.0)
    dropout: float = setting(0.1, min=0.0, below=1.0)
    size: int | None = setting(None, positive=True)
    name: str | None = setting(None, non_empty=True)
    layers: int | list[int] = setting(-1, non_empty=True)
    workers: int = setting(2, min=1, runtime=True)
    extra: bool = setting(False, omit_default=True)
    augment: Augment = setting(factory=Augment)
    sizes: list[int] = setting(factory=lambda: [1, 2], min=1)
    weights: dict[str, float] = setting(factory=dict, min=0)

    def __post_init__(self) -> None:
        if self.extra and self.level != "lld":
            raise ConfigError.at("extra", "needs level: lld")


@dataclass(frozen=True)
class Required:
    sample_rate: int = setting(positive=True)


def error_of(block, where="run.block", cls=Block) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_block(cls, block, where)
    return caught.value


def test_a_valid_block_keeps_values_as_written_and_fills_defaults():
    parsed = parse_block(Block, {"rate": 2, "layers": [3, 4], "augment": {"noise": 1}}, "run.block")
    assert parsed.rate == 2 and isinstance(parsed.rate, int)  # never coerced: blocks are hashed as written
    assert parsed.layers == [3, 4] and parsed.augment == Augment(flip=True, noise=1)
    assert parsed.steps == 10 and parsed.sizes == [1, 2]
    assert as_block(parsed)["augment"] == {"flip": True, "noise": 1}
    assert list(as_block(parsed)) == ["level", "steps", "rate", "dropout", "size", "name", "layers", "workers",
                                      "extra", "augment", "sizes", "weights"]


def test_an_unknown_key_is_named_with_its_full_path_and_the_allowed_keys():
    error = error_of({"stepz": 3, "zz": 1})
    assert str(error).startswith("params.yaml: unknown key 'run.block.stepz'; allowed keys in 'run.block': level")
    assert error.key == "run.block.stepz" and "steps" in error.allowed
    assert "'run.block.augment.flipp'" in str(error_of({"augment": {"flipp": True}}))


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"steps": "3"}, "'run.block.steps' must be an integer >= 1, got '3'"),
        ({"steps": True}, "'run.block.steps' must be an integer >= 1, got True"),
        ({"steps": 2.0}, "'run.block.steps' must be an integer >= 1, got 2.0"),
        ({"rate": "fast"}, "'run.block.rate' must be a number > 0.0, got 'fast'"),
        ({"size": 0}, "'run.block.size' must be a positive integer or null, got 0"),
        ({"name": ""}, "'run.block.name' must be a non-empty string or null, got ''"),
        ({"layers": []}, "'run.block.layers' must be an integer or a non-empty list of integers, got []"),
        ({"augment": {"flip": 1}}, "'run.block.augment.flip' must be true or false, got 1"),
        ({"augment": 3}, "'run.block.augment' must be a mapping with keys flip, noise; got 3"),
        ({"sizes": [1, "2"]}, "'run.block.sizes' must be a list of integers >= 1, got [1, '2']"),
        ({"weights": [1]}, "'run.block.weights' must be a mapping, got [1]"),
        ({"weights": {"kl": "x"}}, "'run.block.weights.kl' must be a number >= 0, got 'x'"),
    ],
)
def test_a_wrong_type_names_the_key_and_what_is_allowed(block, message):
    assert str(error_of(block)) == "params.yaml: " + message


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"steps": 0}, "'run.block.steps' must be an integer >= 1, got 0"),
        ({"rate": 0.0}, "'run.block.rate' must be a number > 0.0, got 0.0"),
        ({"dropout": 1.0}, "'run.block.dropout' must be a number in [0.0, 1.0), got 1.0"),
        ({"augment": {"noise": 1.5}}, "'run.block.augment.noise' must be a number in [0.0, 1.0], got 1.5"),
        ({"sizes": [0]}, "'run.block.sizes' must be a list of integers >= 1, got [0]"),
        ({"weights": {"kl": -1}}, "'run.block.weights.kl' must be a number >= 0, got -1"),
    ],
)
def test_a_value_out_of_range_names_the_range(block, message):
    assert str(error_of(block)) == "params.yaml: " + message


def test_a_bad_choice_lists_the_allowed_values_in_order():
    error = error_of({"level": "x"}, "features.audio")
    assert str(error) == "params.yaml: 'features.audio.level' is 'x'; allowed values: functionals, lld"
    assert (error.key, error.detail) == ("features.audio.level", "is 'x'; allowed values: functionals, lld")


def test_missing_required_keys_and_cross_field_rules_name_their_path():
    assert str(error_of({}, "cut", Required)) == "params.yaml: missing key 'cut.sample_rate'"
    assert str(error_of({"extra": True})) == "params.yaml: 'run.block.extra' needs level: lld"
    assert parse_block(Block, {"extra": True, "level": "lld"}, "run.block").extra


def test_runtime_fields_and_untouched_late_fields_stay_out_of_the_record():
    plain = recorded(parse_block(Block, {}, "b"))
    assert "workers" not in plain and "extra" not in plain
    assert recorded(parse_block(Block, {"workers": 8}, "b")) == plain  # placement never changes results
    assert recorded(parse_block(Block, {"extra": True, "level": "lld"}, "b"))["extra"] is True


def test_a_block_parsed_without_its_path_is_reported_under_it_later():
    error = error_of({"steps": 0}, "")
    assert error.key == "steps"
    assert str(error.within("features.audio")) == "params.yaml: 'features.audio.steps' must be an integer >= 1, got 0"
    unknown = error_of({"x": 1}, "").within("features.audio")
    assert str(unknown).startswith("params.yaml: unknown key 'features.audio.x'; allowed keys in 'features.audio'")


def test_one_error_type_for_the_whole_project():
    assert PipelineConfigError is ConfigError and issubclass(ConfigError, ValueError)
    copy = pickle.loads(pickle.dumps(ConfigError.at("cut.max_seconds", "must be a positive number, got 0")))
    assert (str(copy), copy.key) == ("params.yaml: 'cut.max_seconds' must be a positive number, got 0",
                                     "cut.max_seconds")


def test_a_misspelt_rule_fails_when_the_block_is_declared():
    with pytest.raises(TypeError, match="unknown setting rule 'mni'"):
        setting(1, mni=0)


def test_a_block_declared_by_its_keys_rejects_only_unknown_keys():
    from core.config import keys_block

    Inner = keys_block("Inner", ["a"])
    Outer = keys_block("Outer", ["x", ("inner", Inner)])
    parsed = parse_block(Outer, {"x": [1, "anything"], "inner": {"a": None}}, "lipsync")
    assert parsed.x == [1, "anything"] and parsed.inner.a is None and parse_block(Outer, {}, "lipsync").inner is None
    assert "unknown key 'lipsync.inner.b'" in str(error_of({"inner": {"b": 1}}, "lipsync", Outer))
    assert "'lipsync.inner' must be a mapping with keys a; got None" in str(error_of({"inner": None}, "lipsync", Outer))

"""Extractor settings are part of every feature cache key and file hash: they must not drift.

`tests/extractor_config_pins.json` records, for a set of params blocks, what each extractor makes of
them: `output_config()` (cache keys and `config_hash`), the full `config` written into the feature
file's metadata, the derived properties the features stage reads, and, for invalid blocks, the field
and message of the configuration error. A change to how extractor blocks are parsed must leave every
entry byte-identical, or existing caches and feature files would silently stop matching.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractors import ExtractorConfigError, build_extractor

PINS = json.loads((Path(__file__).with_name("extractor_config_pins.json")).read_text())


@pytest.mark.parametrize("pin", PINS["valid"], ids=[json.dumps(p["block"]) for p in PINS["valid"]])
def test_output_config_and_metadata_config_are_unchanged(pin):
    extractor = build_extractor(pin["block"])
    assert json.dumps(extractor.output_config()) == pin["output_config"]
    assert json.dumps(extractor.config) == pin["config"]
    derived = {"consumes": extractor.consumes, "wants_sequence": extractor.wants_sequence,
               "context_turns": extractor.context_turns, "future_turns": extractor.future_turns,
               "frame_budget": extractor.frame_budget}
    assert derived == {key: pin[key] for key in derived}


@pytest.mark.parametrize("pin", PINS["invalid"], ids=[json.dumps(p["block"]) for p in PINS["invalid"]])
def test_invalid_blocks_fail_on_the_same_field_with_the_same_message(pin):
    with pytest.raises(ExtractorConfigError) as caught:
        build_extractor(pin["block"])
    assert (caught.value.field, caught.value.message) == (pin["field"], pin["message"])

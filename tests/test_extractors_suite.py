"""The full extractor suite on tiny offline models: RoBERTa pooling modes and the prompt-mask window,
wav2vec2 layers / chunks / sequences, TimeSformer, the OpenSMILE sets, full-frame input, and the
features stage writing `sequence` columns and reading full frames from the source video."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from extractors import BadInput, ExtractorConfigError, FramesItem, TextItem, WaveformItem, build_extractor
from extractors.base import cap_sequence, clear_model_cache, length_batches
from extractors.visual_timesformer import uniform_indices

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = ("i am so happy today . the train is late again and bob is sad . what are you doing here ? "
         "oh my god you did it ! fine . no way that is not true . now alice feels carol bob : ").split()


# -- tiny models saved the way hub snapshots are laid out -------------------------------------------


def tiny_roberta(folder: Path, corpus: list[str] | None = None, layers: int = 4, positions: int = 130) -> Path:
    """A RobertaModel + byte-level BPE tokenizer (vocab=/merges=, the spelling transformers 5 honours)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    texts = (corpus or []) + [" ".join(WORDS)] * 3
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    assert len(tokenizer) > 100  # the vocabulary really loaded
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=positions, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2)
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_wav2vec2(folder: Path, norm: str = "layer") -> Path:
    """A 2-layer Wav2Vec2Model (16-d) + feature extractor; `norm` picks the feature-encoder norm."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=4,
                            num_conv_pos_embedding_groups=2, feat_extract_norm=norm,
                            do_stable_layer_norm=norm == "layer")
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=norm == "layer").save_pretrained(folder)
    return folder


def tiny_timesformer(folder: Path) -> Path:
    """A 2-layer TimesformerModel on 32x32 inputs, 4 frames, + its image processor."""
    import torch
    from transformers import TimesformerConfig, TimesformerModel, VideoMAEImageProcessor

    torch.manual_seed(0)
    config = TimesformerConfig(image_size=32, patch_size=16, num_frames=4, hidden_size=16, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=32)
    TimesformerModel(config).save_pretrained(folder)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def roberta(tmp_path_factory) -> Path:
    return tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="module")
def w2v(tmp_path_factory) -> Path:
    return tiny_wav2vec2(tmp_path_factory.mktemp("tiny-w2v"))


@pytest.fixture(scope="module")
def w2v_group(tmp_path_factory) -> Path:
    return tiny_wav2vec2(tmp_path_factory.mktemp("tiny-w2v-group"), norm="group")


@pytest.fixture(scope="module")
def tsf(tmp_path_factory) -> Path:
    return tiny_timesformer(tmp_path_factory.mktemp("tiny-tsf"))


def _signal(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _frames(count: int, size: int = 40, seed: int = 0, width: int | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, width or size, 3), dtype=np.uint8) for _ in range(count)]


# -- shared machinery ------------------------------------------------------------------------------


def test_length_batches_sort_cap_and_cover_every_item():
    lengths = [5, 1, 9, 3, 3, 7]
    batches = length_batches(lengths, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert [[lengths[i] for i in b] for b in batches] == [[1, 3], [3, 5], [7, 9]]
    budgeted = length_batches(lengths, batch_size=10, budget=12)
    assert all(max(lengths[i] for i in b) * len(b) <= 12 or len(b) == 1 for b in budgeted)
    assert length_batches(lengths, 2) == batches  # deterministic


def test_cap_sequence_pools_over_equal_spans():
    seq = np.arange(10, dtype=np.float32).reshape(10, 1)
    np.testing.assert_array_equal(cap_sequence(seq, 20), seq)
    capped = cap_sequence(seq, 5)
    assert capped.shape == (5, 1)
    np.testing.assert_allclose(capped[:, 0], [0.5, 2.5, 4.5, 6.5, 8.5])


def test_registry_builds_every_extractor_and_local_folders_are_fingerprinted(roberta, tmp_path):
    for name in ("minilm", "roberta", "wav2vec2", "timesformer", "opensmile", "densenet"):
        assert build_extractor({"name": name}).name == name
    from pipeline.extractor_identity import extractor_identity

    copy = shutil.copytree(roberta, tmp_path / "model")
    config = extractor_identity(build_extractor({"name": "roberta", "model": str(copy)}))
    assert len(config["model_files"]) == 64 and config["pooling"] == "cls"
    (copy / "extra.txt").write_text("retrained")  # a folder changed in place gets a new cache key
    assert extractor_identity(build_extractor({"name": "roberta", "model": str(copy)})) != config
    hub = extractor_identity(build_extractor({"name": "roberta"}))
    assert "model_files" not in hub and hub["model"] is None
    # options added later stay out of the hash while at their default
    assert "sequence" not in build_extractor({"name": "opensmile"}).output_config()
    assert build_extractor({"name": "opensmile", "level": "lld", "sequence": True}).output_config()["sequence"]


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"name": "roberta", "pooling": "max"}, "pooling", ["cls", "mean", "last4_mean", "prompt_mask"]),
        ({"name": "roberta", "future_context": 2}, "future_context", ["prompt_mask"]),
        ({"name": "roberta", "dtype": "float8"}, "dtype", ["float32", "float16"]),
        ({"name": "roberta", "sequence": "yes"}, "sequence", ["true or false"]),
        ({"name": "wav2vec2", "layer": "last"}, "layer", ["integer"]),
        ({"name": "wav2vec2", "layer": [1, 2], "layer_weights": [1.0]}, "layer_weights", ["2 non-negative"]),
        ({"name": "wav2vec2", "chunk_seconds": 0}, "chunk_seconds", ["> 0.5"]),
        ({"name": "timesformer", "input": "faces"}, "input", ["face", "full_frame"]),
        ({"name": "timesformer", "frames": 0}, "frames", [">= 1"]),
        ({"name": "opensmile", "sequence": True}, "sequence", ["level: lld"]),
        ({"name": "densenet", "input": "video"}, "input", ["full_frame"]),
    ],
)
def test_invalid_options_name_the_field(config, field, words):
    with pytest.raises(ExtractorConfigError) as error:
        build_extractor(config)
    assert error.value.field == field
    for word in words:
        assert word in str(error.value)


def test_missing_hub_models_fail_offline_naming_model(tmp_path):
    for name in ("roberta", "wav2vec2", "timesformer"):
        with pytest.raises(ExtractorConfigError) as error:
            build_extractor({"name": name, "model": str(tmp_path / "absent")}).load()
        assert error.value.field == "model" and "offline" in str(error.value)


# -- text ------------------------------------------------------------------------------------------

ITEMS = [TextItem("a", "i am so happy today"), TextItem("b", "the train is late again"),
         TextItem("c", "oh my god you did it ! no way that is not true")]


def _reference_states(folder: Path, texts: list[str]):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.inference_mode():
        return [model(**tokenizer(t, return_tensors="pt"), output_hidden_states=True) for t in texts]


def test_roberta_pooling_modes_match_the_model(roberta):
    import torch.nn.functional as F

    reference = _reference_states(roberta, [i.text for i in ITEMS])
    base = {"modality": "text", "name": "roberta", "model": str(roberta), "batch_size": 2}
    cls = build_extractor(base)
    assert cls.dim == 32
    vectors = cls.extract(ITEMS)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, np.stack([r.last_hidden_state[0, 0].numpy() for r in reference]), atol=1e-5)
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)  # RoBERTa features are not normalised

    mean = build_extractor({**base, "pooling": "mean"}).extract(ITEMS)
    expected = np.stack([r.last_hidden_state[0].mean(0).numpy() for r in reference])
    np.testing.assert_allclose(mean, expected, atol=1e-5)

    last4 = build_extractor({**base, "pooling": "last4_mean"}).extract(ITEMS)
    expected = np.stack([
        np.mean([F.layer_norm(h[0, 0], (32,)).numpy() for h in r.hidden_states[-4:]], axis=0) for r in reference
    ])
    np.testing.assert_allclose(last4, expected, atol=1e-5)
    assert not np.allclose(last4, vectors)


def test_text_output_is_deterministic_and_batch_independent(roberta):
    config = {"name": "roberta", "model": str(roberta), "pooling": "mean", "batch_size": 3}
    first = build_extractor(config).extract(ITEMS)
    clear_model_cache()
    np.testing.assert_array_equal(build_extractor(config).extract(ITEMS), first)
    alone = np.concatenate([build_extractor({**config, "batch_size": 1}).extract([item]) for item in ITEMS])
    np.testing.assert_allclose(alone, first, atol=1e-5)  # length-sorted batches come back in item order


def test_text_sequences_hold_the_target_tokens(roberta):
    extractor = build_extractor({"name": "roberta", "model": str(roberta), "pooling": "mean", "sequence": True,
                                 "max_sequence": 4})
    vectors, sequences = extractor.extract_with_sequences(ITEMS[:2])
    lengths = [sum(extractor.encode(item).target) for item in ITEMS[:2]]
    assert [len(s) for s in sequences] == [min(n, 4) for n in lengths]
    assert all(s.shape[1] == 32 for s in sequences)
    unbounded = build_extractor({"name": "roberta", "model": str(roberta), "pooling": "mean", "sequence": True})
    _, full = unbounded.extract_with_sequences(ITEMS[:1])
    np.testing.assert_allclose(full[0].mean(axis=0), vectors[0], atol=1e-5)


def test_half_precision_falls_back_to_float32_on_cpu(roberta):
    config = {"name": "roberta", "model": str(roberta), "device": "cpu"}
    with pytest.warns(UserWarning, match="float32"):
        half = build_extractor({**config, "dtype": "float16"}).extract(ITEMS[:1])
    np.testing.assert_allclose(half, build_extractor(config).extract(ITEMS[:1]), atol=1e-6)


def _tokens(extractor, ids: list[int]) -> list[str]:
    backend = extractor.codec().backend
    return [backend.id_to_token(i) for i in ids]


def test_prompt_mask_layout_reads_the_mask_and_alternates_context(roberta):
    extractor = build_extractor({"name": "roberta", "model": str(roberta), "pooling": "prompt_mask", "context": 3,
                                 "future_context": 3, "max_length": 128})
    codec = extractor.codec()
    past = (("carol", "what are you doing here ?"), ("bob", "the train is late again"))
    future = (("bob", "no way that is not true"), ("carol", "fine ."))
    item = TextItem("t", "i am so happy today", "alice", past, future)
    encoded = extractor.encode(item)
    assert encoded.ids[-1] == codec.mask_id and encoded.read_at == len(encoded.ids) - 1
    assert encoded.ids[0] == codec.cls_id
    text = codec.backend.decode(encoded.ids, skip_special_tokens=False)
    order = [text.index(s) for s in ("what are you", "the train is", "alice: i am so happy", "no way", "fine",
                                     "Now alice feels")]
    assert order == sorted(order)  # past (oldest first), target, future, prompt
    target = [i for i, keep in zip(encoded.ids, encoded.target) if keep]
    assert target == codec.tokens("alice: i am so happy today")

    # a tight limit keeps the nearest turns, alternately, whole utterances only
    pieces = {s: len(codec.tokens(extractor.format_turn(*s))) + 1 for s in past + future}
    fixed = len(codec.tokens("alice: i am so happy today")) + 1 + len(codec.tokens("Now alice feels")) + 2
    limit = fixed + pieces[past[1]] + pieces[future[0]] + 1  # room for the two nearest, not a third
    tight = build_extractor({"name": "roberta", "model": str(roberta), "pooling": "prompt_mask", "context": 3,
                             "future_context": 3, "max_length": limit})
    short = tight.encode(item)
    text = codec.backend.decode(short.ids, skip_special_tokens=False)
    assert len(short.ids) <= limit and "the train is late again" in text and "no way that is not true" in text
    assert "what are you" not in text and "fine" not in text
    vectors = tight.extract([item])
    assert vectors.shape == (1, 32) and np.isfinite(vectors).all()

    # past only (the code-faithful layout): no future utterance appears
    past_only = build_extractor({"name": "roberta", "model": str(roberta), "pooling": "prompt_mask", "context": 3})
    assert "no way" not in codec.backend.decode(past_only.encode(item).ids, skip_special_tokens=False)


def test_prompt_mask_reads_the_hidden_state_at_the_mask(roberta):
    import torch
    from transformers import AutoModel

    extractor = build_extractor({"name": "roberta", "model": str(roberta), "pooling": "prompt_mask"})
    item = TextItem("t", "i am so happy today", "alice")
    encoded = extractor.encode(item)
    model = AutoModel.from_pretrained(roberta, local_files_only=True).eval()
    with torch.inference_mode():
        state = model(input_ids=torch.tensor([encoded.ids])).last_hidden_state[0, -1].numpy()
    np.testing.assert_allclose(extractor.extract([item])[0], state, atol=1e-5)


def test_prompt_mask_keeps_the_tail_of_a_target_longer_than_the_limit(roberta):
    extractor = build_extractor({"name": "roberta", "model": str(roberta), "pooling": "prompt_mask", "context": 2,
                                 "max_length": 16})
    long_text = " ".join(["one two three"] * 20) + " the end"
    item = TextItem("t", long_text, "bob", (("alice", "i am so happy"),))
    encoded = extractor.encode(item)
    codec = extractor.codec()
    assert len(encoded.ids) == 16 and encoded.ids[-1] == codec.mask_id
    target = [i for i, keep in zip(encoded.ids, encoded.target) if keep]
    assert target and codec.tokens("bob: " + long_text)[-len(target):] == target  # the tail survives
    assert "happy" not in codec.backend.decode(encoded.ids)


def test_prompt_mask_on_a_real_meld_dialogue(tmp_path):
    meld = SHARED_DATA / "meld"
    if not meld.is_dir():
        pytest.skip(f"{meld} not present")
    from pipeline.datasets.meld import load_reference_tables

    frame = load_reference_tables(meld)
    train = frame[frame.split == "train"]
    sizes = train.groupby("dialogue_id").size()
    dialogue = train[train.dialogue_id == sizes.idxmax()].sort_values("turn")  # the longest dialogue
    turns = list(zip(dialogue.speaker.astype(str), dialogue.text.astype(str)))
    assert len(turns) >= 15
    folder = tiny_roberta(tmp_path / "meld-roberta", corpus=train.text.astype(str).head(3000).tolist())
    extractor = build_extractor({"name": "roberta", "model": str(folder), "pooling": "prompt_mask", "context": 50,
                                 "future_context": 50, "max_length": 96})
    codec = extractor.codec()
    middle = len(turns) // 2
    speaker, text = turns[middle]
    item = TextItem("u", text, speaker, tuple(turns[:middle]), tuple(turns[middle + 1 :]))
    encoded = extractor.encode(item)
    assert len(encoded.ids) <= 96 and encoded.ids[-1] == codec.mask_id
    target = [i for i, keep in zip(encoded.ids, encoded.target) if keep]
    assert target == codec.tokens(extractor.format_turn(speaker, text))  # never truncated away
    # split at the separators: whole utterances, contiguous around the target, then the prompt
    segments, current = [], []
    for token in encoded.ids[1:]:
        if token == codec.sep_id:
            segments.append(current)
            current = []
        else:
            current.append(token)
    assert current == codec.tokens(f"Now {speaker} feels") + [codec.mask_id]
    pieces = [codec.tokens(extractor.format_turn(*turn)) for turn in turns]
    first = pieces.index(segments[0])
    assert segments == pieces[first : first + len(segments)]
    assert first <= middle < first + len(segments) and segments[middle - first] == target
    assert 1 < len(segments) < len(turns)  # the window was truncated around the target
    # the next turn on each side did not fit (a side stops at its first utterance that does not fit)
    room = 96 - len(encoded.ids)
    before, after = first - 1, first + len(segments)
    assert before < 0 or len(pieces[before]) + 1 > room
    assert after >= len(turns) or len(pieces[after]) + 1 > room
    every = TextItem("u", text, speaker, tuple(turns[:middle]), tuple(turns[middle + 1 :]))
    assert extractor.extract([every]).shape == (1, 32)


def test_minilm_accepts_the_new_pooling_modes():
    extractor = build_extractor({"name": "minilm", "pooling": "prompt_mask", "context": 1})
    item = TextItem("u", "I can't believe it", "Rachel", (("Ross", "We were on a break!"),))
    encoded = extractor.encode(item)
    assert encoded.ids[-1] == extractor.codec().mask_id
    vector = extractor.extract([item])
    assert vector.shape == (1, 384)
    np.testing.assert_allclose(np.linalg.norm(vector), 1.0, atol=1e-5)


# -- audio -----------------------------------------------------------------------------------------


def _w2v_reference(folder: Path, samples: np.ndarray, layer: int = -1) -> np.ndarray:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    normed = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
    with torch.inference_mode():
        out = model(torch.from_numpy(normed)[None], output_hidden_states=True)
    return (out.last_hidden_state if layer == -1 else out.hidden_states[layer])[0].numpy()


def test_wav2vec2_mean_pools_the_chosen_layer(w2v):
    items = [WaveformItem("a", _signal(1.0, 0)), WaveformItem("b", _signal(0.6, 1))]
    extractor = build_extractor({"modality": "audio", "name": "wav2vec2", "model": str(w2v), "batch_size": 4})
    assert extractor.dim == 16 and extractor.consumes == "waveform"
    vectors = extractor.extract(items)
    assert vectors.shape == (2, 16) and vectors.dtype == np.float32
    for row, item in enumerate(items):
        np.testing.assert_allclose(vectors[row], _w2v_reference(w2v, item.samples).mean(0), atol=1e-4)
    first = build_extractor({"name": "wav2vec2", "model": str(w2v), "layer": 1}).extract(items[:1])
    np.testing.assert_allclose(first[0], _w2v_reference(w2v, items[0].samples, 1).mean(0), atol=1e-4)
    mixed = build_extractor({"name": "wav2vec2", "model": str(w2v), "layer": [1, 2], "layer_weights": [3, 1]})
    expected = (0.75 * _w2v_reference(w2v, items[0].samples, 1) + 0.25 * _w2v_reference(w2v, items[0].samples, 2))
    np.testing.assert_allclose(mixed.extract(items[:1])[0], expected.mean(0), atol=1e-4)
    with pytest.raises(ExtractorConfigError, match="out of range"):
        build_extractor({"name": "wav2vec2", "model": str(w2v), "layer": 7}).load()


def test_wav2vec2_batches_do_not_change_the_numbers(w2v, w2v_group):
    items = [WaveformItem(str(i), _signal(0.3 + 0.25 * i, i)) for i in range(4)]
    for folder in (w2v, w2v_group):
        batched = build_extractor({"name": "wav2vec2", "model": str(folder), "batch_size": 4}).extract(items)
        single = build_extractor({"name": "wav2vec2", "model": str(folder), "batch_size": 1})
        alone = np.concatenate([single.extract([item]) for item in items])
        np.testing.assert_allclose(batched, alone, atol=1e-4)
        clear_model_cache()
        again = build_extractor({"name": "wav2vec2", "model": str(folder), "batch_size": 4}).extract(items)
        np.testing.assert_array_equal(again, batched)


def test_wav2vec2_sequences_chunks_and_short_audio(w2v):
    samples = _signal(2.5, 3)
    seq_extractor = build_extractor({"name": "wav2vec2", "model": str(w2v), "sequence": True, "max_sequence": 5000})
    vectors, (sequence,) = seq_extractor.extract_with_sequences([WaveformItem("a", samples)])
    frames = seq_extractor.frames_for(samples.size)
    assert sequence.shape == (frames, 16) and frames > 100
    np.testing.assert_allclose(sequence.mean(0), vectors[0], atol=1e-5)
    capped = build_extractor({"name": "wav2vec2", "model": str(w2v), "sequence": True, "max_sequence": 10})
    assert capped.extract_with_sequences([WaveformItem("a", samples)])[1][0].shape == (10, 16)

    chunked = build_extractor({"name": "wav2vec2", "model": str(w2v), "chunk_seconds": 1.0})
    parts = chunked.chunks(samples)
    assert len(parts) == 3 and sum(p.size for p in parts) == samples.size
    expected = np.concatenate([_w2v_reference(w2v, p) for p in parts]).mean(0)  # duration-weighted
    np.testing.assert_allclose(chunked.extract([WaveformItem("a", samples)])[0], expected, atol=1e-4)

    with pytest.raises(BadInput, match="too short"):
        chunked.check(WaveformItem("s", np.zeros(30, np.float32)))
    with pytest.raises(BadInput, match="16 kHz"):
        chunked.check(WaveformItem("r", samples, 8000))


@pytest.fixture(scope="module")
def spoken() -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    from tests.media_factory import speech

    return speech("I can not believe you did that to me")


@pytest.mark.parametrize(("feature_set", "dim"), [("IS09", 384), ("IS10", 1582), ("ComParE_2016", 6373)])
def test_opensmile_challenge_sets(spoken, feature_set, dim):
    extractor = build_extractor({"name": "opensmile", "feature_set": feature_set})
    vector = extractor.extract([WaveformItem("a", spoken)])
    assert extractor.dim == dim and vector.shape == (1, dim) and np.isfinite(vector).all()


def test_opensmile_lld_sequence(spoken):
    extractor = build_extractor({"name": "opensmile", "level": "lld", "sequence": True, "max_sequence": 50})
    vectors, (sequence,) = extractor.extract_with_sequences([WaveformItem("a", spoken)])
    assert extractor.sequence_dim == 25 and sequence.shape == (50, 25)
    uncapped = build_extractor({"name": "opensmile", "level": "lld", "sequence": True, "max_sequence": 10_000})
    _, (full,) = uncapped.extract_with_sequences([WaveformItem("a", spoken)])
    assert len(full) > 50  # 10 ms hop
    np.testing.assert_allclose(full.mean(0), vectors[0, :25], rtol=1e-4, atol=1e-4)


# -- visual ----------------------------------------------------------------------------------------


def test_uniform_indices_repeat_short_tracks():
    assert uniform_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    assert uniform_indices(16, 4).tolist() == [0, 5, 10, 15]


def test_timesformer_pools_every_token(tsf):
    import torch
    from transformers import AutoModel

    items = [FramesItem("a", _frames(5, 40, 0)), FramesItem("b", _frames(2, 32, 1))]
    config = {"modality": "visual", "name": "timesformer", "model": str(tsf), "frames": 4, "batch_size": 2}
    extractor = build_extractor(config)
    assert extractor.dim == 16 and extractor.consumes == "face_frames" and extractor.frame_budget == 4
    vectors = extractor.extract(items)
    assert vectors.shape == (2, 16) and np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])
    model = AutoModel.from_pretrained(tsf, local_files_only=True).eval()
    video = extractor._video()
    with torch.inference_mode():
        tokens = model(pixel_values=extractor._clip(items[1], video)[None]).last_hidden_state
    np.testing.assert_allclose(vectors[1], tokens[0].mean(0).numpy(), atol=1e-5)
    clear_model_cache()
    np.testing.assert_array_equal(build_extractor({**config, "batch_size": 1}).extract(items), vectors)
    # 8 frames on a 4-frame checkpoint: the time embeddings are interpolated
    assert build_extractor({**config, "frames": 8}).extract(items[:1]).shape == (1, 16)
    with pytest.raises(ExtractorConfigError, match="takes 32x32"):
        build_extractor({**config, "image_size": 224}).load()


def test_timesformer_sequence_and_full_frame_mode(tsf):
    config = {"name": "timesformer", "model": str(tsf), "frames": 4, "sequence": True}
    extractor = build_extractor(config)
    vectors, (sequence,) = extractor.extract_with_sequences([FramesItem("a", _frames(6, 36))])
    assert sequence.shape == (4, 16)
    full = build_extractor({**config, "input": "full_frame"})
    assert full.consumes == "full_frames"
    wide = FramesItem("w", _frames(4, 48, 2, width=96))  # 2:1 frames are resized and centre-cropped
    assert full.extract([wide]).shape == (1, 16)


def test_densenet_full_frame_mode_and_sequences():
    config = {"name": "densenet", "frames": 3, "image_size": 32, "sequence": True, "project_to": 8}
    extractor = build_extractor(config)
    assert extractor.consumes == "face_frames"
    vectors, (sequence,) = extractor.extract_with_sequences([FramesItem("a", _frames(5))])
    assert sequence.shape == (3, 8) and vectors.shape == (1, 8)
    np.testing.assert_allclose(sequence.mean(0), vectors[0], rtol=1e-4, atol=1e-4)
    assert build_extractor({**config, "input": "full_frame"}).consumes == "full_frames"
    plain = build_extractor({"name": "densenet"}).output_config()
    assert "input" not in plain and "sequence" not in plain


# -- the features stage: sequences and full frames ------------------------------------------------


def _stage_project(tmp_path: Path, monkeypatch, params: dict) -> dict:
    import soundfile as sf

    from pipeline import paths
    from pipeline.manifest import write_manifest
    from pipeline.schema import CUTS_SCHEMA
    from pipeline.tables import write_frame
    from tests.media_factory import write_video

    monkeypatch.chdir(tmp_path)
    video = np.stack(_frames(30, 48, 5, width=64))
    media = write_video(tmp_path / "corpus" / "d0.mp4", video, 25, None)
    rows, cuts = [], []
    spans = {"d0/0": (0, 10, True), "d0/1": (10, 30, True), "d0/2": (5, 5, True), "d0/3": (0, 10, False)}
    for turn, (utt, (start, end, has_video)) in enumerate(spans.items()):
        rows.append({"utt_id": utt, "dialogue_id": "d0", "turn": turn, "speaker": "ann", "text": f"turn {turn}",
                     "label": "neutral", "split": "train", "media": "d0.mp4", "start": np.nan, "end": np.nan})
        wav = paths.audio_path(utt)
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, _signal(0.4 + 0.1 * turn, turn), 16000, subtype="FLOAT")
        cuts.append({"utt_id": utt, "media": str(media), "audio": str(wav), "fps": 25.0, "start_frame": start,
                     "end_frame": end, "start": start / 25, "duration": (end - start) / 25, "width": 64,
                     "height": 48, "has_video": has_video})
    write_manifest(pd.DataFrame(rows), tmp_path / "corpus", ["neutral"], "test")
    write_frame(pd.DataFrame(cuts)[CUTS_SCHEMA.names], paths.CUTS)
    return params


def test_stage_writes_sequences_and_metadata(tmp_path, monkeypatch, params, w2v):
    from pipeline import paths
    from pipeline.hooks import RecordingHook
    from pipeline.runner import PlainRunner
    from pipeline.stages import features
    from pipeline.tables import read_metadata, read_sequences, read_vectors

    params = _stage_project(tmp_path, monkeypatch, params)
    params["features"]["audio"] = {"modality": "audio", "name": "wav2vec2", "model": str(w2v), "sequence": True,
                                   "max_sequence": 20}
    summary = features.run(params, PlainRunner(1, RecordingHook()), "audio")
    ids, vectors = read_vectors(paths.features_path("audio"))
    assert ids == ["d0/0", "d0/1", "d0/2", "d0/3"] and vectors.shape == (4, 16) and summary["dim"] == 16
    sequences = read_sequences(paths.features_path("audio"))
    assert all(seq.shape == (20, 16) for seq in sequences.values())
    meta = read_metadata(paths.features_path("audio"))
    assert meta["extractor"] == "wav2vec2" and meta["sequence"] == {"dim": 16, "max_length": 20}
    assert len(meta["config"]["model"]) > 0 and "model_files" not in meta["config"]
    assert pq.read_schema(paths.features_path("audio")).field("sequence").type.value_type.value_type == "float"
    # the cached parts hold the sequences too: a rerun reads them back unchanged
    features.run(params, PlainRunner(1, RecordingHook()), "audio")
    again = read_sequences(paths.features_path("audio"))
    for utt, seq in sequences.items():
        np.testing.assert_array_equal(again[utt], seq)


def test_stage_reads_full_frames_from_the_source_video(tmp_path, monkeypatch, params, tsf):
    from pipeline import paths
    from pipeline.feature_inputs import FrameSpan, read_span, span_indices
    from pipeline.hooks import RecordingHook
    from pipeline.ledger import read_ledger
    from pipeline.runner import PlainRunner
    from pipeline.stages import features
    from pipeline.tables import read_vectors

    params = _stage_project(tmp_path, monkeypatch, params)
    params["features"]["visual"] = {"modality": "visual", "name": "timesformer", "model": str(tsf),
                                    "input": "full_frame", "frames": 4}
    features.run(params, PlainRunner(1, RecordingHook()), "visual")
    ids, vectors = read_vectors(paths.features_path("visual"))
    assert ids == ["d0/0", "d0/1"] and vectors.shape == (2, 16)
    ledger = {f.utt_id: f.reason for f in read_ledger(paths.stage_ledger("features@visual"))}
    assert "empty frame range" in ledger["d0/2"] and "no video stream" in ledger["d0/3"]
    span = FrameSpan(str(tmp_path / "corpus" / "d0.mp4"), 25.0, 10, 30)
    assert span_indices(span, 4) == [10, 16, 23, 29]
    frames = read_span(span, 4)
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    extractor = build_extractor(params["features"]["visual"])
    np.testing.assert_allclose(vectors[1], extractor.extract([FramesItem("d0/1", frames)])[0], atol=1e-5)


def test_stage_gives_text_extractors_future_context(params):
    from pipeline.text_items import text_items

    manifest = pd.DataFrame({"utt_id": ["d/0", "d/1", "d/2", "d/3"], "dialogue_id": "d", "turn": [0, 1, 2, 3],
                             "speaker": ["a", "b", "a", "b"], "text": ["zero", "one", "two", "three"]})
    items = text_items(manifest, {"d/1", "d/3"}, turns=1, future=2)
    assert items["d/1"].context == (("a", "zero"),) and items["d/1"].future == (("a", "two"), ("b", "three"))
    assert items["d/3"].context == (("a", "two"),) and items["d/3"].future == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert text_items(manifest, {"d/0"}, turns=0)["d/0"].future == ()

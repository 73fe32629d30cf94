"""Text features from any Hugging Face encoder (BERT, RoBERTa, MiniLM, ...), with dialogue context.

`TransformerTextExtractor` holds everything a transformer text encoder needs: offline loading
through `AutoTokenizer/AutoModel.from_pretrained(..., local_files_only=True)`, context assembly,
length-sorted batching, pooling and the optional token `sequence`. A new encoder family is a
subclass that sets its name, default model and default pooling.

Pooling modes (`pooling:`):
- `cls`: the first token's final state (`<s>` / `[CLS]`), as COSMIC-style RoBERTa features.
- `mean`: the mean over the target utterance's tokens (sentence-transformers style).
- `last4_mean`: the first token's state in each of the last four layers, each layer-normalised,
  then averaged (the "roberta1..4" features the MRD paper combines).
- `prompt_mask`: the dialogue window `[CLS] past </s> speaker: target </s> future </s> Now <speaker>
  feels <mask>`, read at the mask token (TelME / the speaker-KD paper). Context grows outward from
  the target one whole utterance at a time while it fits the model's limit, so the target is never
  dropped; a target longer than the limit keeps its tail.

The `finetune_text` stage trains these same encoders (same inputs, same pooling) and writes a
folder that `model:` can point to.

One job, turning dialogue text into transformer features, which is why the module runs past 400
lines: loading, the four poolings' input assembly and batching are one class, shared by every encoder.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.config import ConfigError, setting
from extractors.base import (
    DTYPES,
    BadInput,
    Extractor,
    ExtractorConfigError,
    TextItem,
    cached_model,
    cap_sequence,
    device_setting,
    length_batches,
    resolve_device,
    torch_dtype,
)
from extractors.hf import auto_model, load_offline, source_paths

POOLINGS = ("cls", "mean", "last4_mean", "prompt_mask")
_NO_LIMIT = 100_000  # tokenizers saved without a max length report ~1e30
# Model types whose position ids start after the padding index (RoBERTa: 514 positions, 512 usable).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "roberta-prelayernorm",
                     "longformer", "ibert", "xmod", "luke", "mpnet"}


@dataclass
class TextCodec:
    """The tokenizer side of an encoder: a private no-padding, no-truncation backend and its limits."""

    backend: Any
    model_limit: int  # longest input the model and tokenizer accept
    sep_token: str
    pad_id: int
    sep_id: int | None
    cls_id: int | None
    mask_id: int | None
    use_type_ids: bool
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tokens(self, text: str) -> list[int]:
        with self.lock:
            return list(self.backend.encode(text, add_special_tokens=False).ids)


@dataclass
class _Encoder:
    """A loaded codec + model pair on its device."""

    codec: TextCodec
    model: Any
    device: str
    hidden: int

    @property
    def backend(self) -> Any:
        return self.codec.backend

    @property
    def model_limit(self) -> int:
        return self.codec.model_limit


@dataclass
class _Encoded:
    ids: list[int]
    type_ids: list[int]
    target: list[bool]  # positions of the target utterance (mean pooling, sequences)
    read_at: int = 0  # position read by `cls` / `prompt_mask` pooling


@dataclass
class TextBatch:
    """Padded tensors for one batch of encoded utterances."""

    inputs: dict[str, Any]
    target: Any  # [B, L] long, 1 on the target utterance's tokens
    read_at: Any  # [B] long


@dataclass(frozen=True)
class TextEncoderConfig:
    model: str | None = setting(None, non_empty=True)
    pooling: str = setting("mean", choices=POOLINGS, omit_default=True)
    normalize: bool = setting(True, omit_default=True)
    context: int = setting(0, min=0)
    future_context: int = setting(0, min=0, omit_default=True)
    batch_size: int = setting(64, min=1, runtime=True)
    max_length: int = setting(256, min=8)
    device: str = device_setting()
    dtype: str = setting("float32", choices=DTYPES, omit_default=True)
    sequence: bool = setting(False, omit_default=True)
    max_sequence: int = setting(128, min=1, omit_default=True)

    def __post_init__(self) -> None:
        if self.future_context and self.pooling != "prompt_mask":
            raise ConfigError.at("future_context", "is only used with pooling: prompt_mask; set it to 0")


class TransformerTextExtractor(Extractor):
    """A Hugging Face encoder; the target utterance is encoded with up to `context` previous turns."""

    modality = "text"
    consumes = "text"
    default_model: ClassVar[str | None] = None
    position_offset: ClassVar[int] = 0  # fallback when the model type is not known to offset positions
    Config = TextEncoderConfig

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        if self.settings.model is None and self.default_model is None and self.bundled_model() is None:
            raise ExtractorConfigError("model", f"extractor {self.name!r} has no default: name a folder or hub id")

    @property
    def context_turns(self) -> int:
        return int(self.settings.context)

    @property
    def future_turns(self) -> int:
        return int(self.settings.future_context)

    def bundled_model(self) -> str | None:
        """A model folder shipped inside an installed package, used when `model` is null."""
        return None

    def model_source(self) -> str:
        source = self.settings.model or self.default_model or self.bundled_model()
        if source is None:
            raise ExtractorConfigError("model", "no model configured")
        return str(source)

    def weight_paths(self) -> dict[str, Path]:
        return source_paths(self.settings.model)

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        self._encoder()

    @property
    def dim(self) -> int:
        return self._encoder().hidden

    def codec(self) -> TextCodec:
        """The tokenizer side only (the fine-tuning stage builds inputs with it and trains its own model)."""
        source = self.model_source()
        codec = cached_model("hf-text-codec", {"source": source}, lambda: self._load_codec(source))
        if self.settings.pooling == "prompt_mask" and codec.mask_id is None:
            message = f"prompt_mask needs a tokenizer with a mask token; {source!r} has none"
            raise ExtractorConfigError("pooling", message)
        return codec

    def _encoder(self) -> _Encoder:
        source = self.model_source()
        device = resolve_device(self.settings.device)
        key = {"source": source, "device": device, "dtype": self.settings.dtype}
        codec = self.codec()  # outside the loader: the model cache lock is not re-entrant
        return cached_model("hf-text", key, lambda: self._load(source, device, codec))

    def _load_codec(self, source: str) -> TextCodec:
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoTokenizer

        tokenizer = load_offline(lambda s: AutoTokenizer.from_pretrained(s, local_files_only=True), source,
                                 what="tokenizer")
        config = load_offline(lambda s: AutoConfig.from_pretrained(s, local_files_only=True), source,
                              what="config")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ExtractorConfigError("model", f"{source!r} has no fast tokenizer, which context assembly needs")
        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
        limits = [_NO_LIMIT]
        if tokenizer.model_max_length and tokenizer.model_max_length < _NO_LIMIT:
            limits.append(int(tokenizer.model_max_length))
        positions = getattr(config, "max_position_embeddings", None)
        if positions:
            offset = self.position_offset
            if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
                offset = int(getattr(config, "pad_token_id", 1) or 1) + 1
            limits.append(int(positions) - offset)
        return TextCodec(
            backend=backend,
            model_limit=min(limits),
            sep_token=tokenizer.sep_token or tokenizer.eos_token or "\n",
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            sep_id=tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id,
            cls_id=tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
            mask_id=tokenizer.mask_token_id,
            use_type_ids="token_type_ids" in tokenizer.model_input_names,
        )

    def _load(self, source: str, device: str, codec: TextCodec) -> _Encoder:
        model = auto_model(source)
        model.eval().to(device=device, dtype=torch_dtype(self.settings.dtype, device))
        return _Encoder(codec=codec, model=model, device=device, hidden=int(model.config.hidden_size))

    # -- inputs --------------------------------------------------------------------------------

    def check(self, item: TextItem) -> None:
        if not isinstance(item.text, str) or not item.text.strip():
            raise BadInput("empty text")

    @staticmethod
    def format_turn(speaker: str, text: str) -> str:
        speaker = (speaker or "").strip()
        return f"{speaker}: {text.strip()}" if speaker else text.strip()

    def target_text(self, item: TextItem) -> str:
        """With context the target carries its speaker too, so the model can relate it to earlier turns."""
        with_speaker = self.context_turns or self.future_turns or self.settings.pooling == "prompt_mask"
        return self.format_turn(item.speaker, item.text) if with_speaker else item.text.strip()

    def context_text(self, item: TextItem, sep_token: str) -> str:
        turns = item.context[-self.context_turns :] if self.context_turns else ()
        return f" {sep_token} ".join(self.format_turn(s, t) for s, t in turns if t and t.strip())

    def encode(self, item: TextItem) -> _Encoded:
        """Token ids with special tokens; the context is cut from the left so the target stays whole."""
        if self.settings.pooling == "prompt_mask":
            return self.encode_prompt(item)
        codec = self.codec()
        max_length = min(int(self.settings.max_length), codec.model_limit)
        processor = codec.backend.post_processor
        specials_single = processor.num_special_tokens_to_add(False) if processor else 0
        specials_pair = processor.num_special_tokens_to_add(True) if processor else 1
        with codec.lock:
            target = codec.backend.encode(self.target_text(item), add_special_tokens=False)
            if len(target.ids) > max_length - specials_single:  # only a target longer than the limit is cut
                target.truncate(max_length - specials_single)
            context_text = self.context_text(item, codec.sep_token)
            budget = max_length - specials_pair - len(target.ids)
            if not context_text or budget <= 0:
                if processor is None:
                    return _Encoded(list(target.ids), [0] * len(target.ids), [True] * len(target.ids))
                single = processor.process(target, None, True)
                return _Encoded(list(single.ids), list(single.type_ids), [True] * len(single.ids))
            context = codec.backend.encode(context_text, add_special_tokens=False)
            if len(context.ids) > budget:
                context.truncate(budget, 0, "left")
            if processor is None:
                sep = [codec.sep_id] if codec.sep_id is not None else []
                ids = list(context.ids) + sep + list(target.ids)
                mask = [False] * (len(ids) - len(target.ids)) + [True] * len(target.ids)
                return _Encoded(ids, [0] * len(ids), mask)
            pair = processor.process(context, target, True)
            mask = [s == 1 for s in pair.sequence_ids]
            if not any(mask):
                mask = [True] * len(pair.ids)
            return _Encoded(list(pair.ids), list(pair.type_ids), mask)

    def prompt_text(self, item: TextItem) -> str:
        return f"Now {(item.speaker or '').strip() or 'the speaker'} feels"

    def encode_prompt(self, item: TextItem) -> _Encoded:
        """`[CLS] past.. </s> target </s> future.. </s> Now <speaker> feels <mask>`, at most the limit.

        Context is added outward from the target (previous, next, second previous, ...), whole
        utterances only, while it fits; a side stops at its first utterance that does not fit.
        """
        codec = self.codec()
        limit = min(int(self.settings.max_length), codec.model_limit)
        head = [codec.cls_id] if codec.cls_id is not None else []
        sep = [codec.sep_id] if codec.sep_id is not None else []
        tail = codec.tokens(self.prompt_text(item)) + [codec.mask_id]
        target = codec.tokens(self.target_text(item))
        room = limit - len(head) - len(sep) - len(tail)
        if room < 1:
            raise BadInput(f"max_length {limit} leaves no room for the utterance next to the prompt")
        target = target[-room:]  # a target longer than the limit keeps its end, next to the prompt
        room -= len(target)
        past = [t for t in reversed(item.context[-self.context_turns :] if self.context_turns else ()) if t[1].strip()]
        future = [t for t in item.future[: self.future_turns] if t[1].strip()]
        before: list[list[int]] = []  # nearest first
        after: list[list[int]] = []
        open_past, open_future, past_turn = bool(past), bool(future), True
        while open_past or open_future:
            use_past = (past_turn and open_past) or not open_future
            turns, taken = (past, before) if use_past else (future, after)
            piece = codec.tokens(self.format_turn(*turns[len(taken)])) + sep
            fits = len(piece) <= room
            if fits:
                taken.append(piece)
                room -= len(piece)
            if not fits or len(taken) == len(turns):
                if use_past:
                    open_past = False
                else:
                    open_future = False
            past_turn = not use_past
        ids = list(head)
        for piece in reversed(before):
            ids += piece
        start = len(ids)
        ids += target + sep
        for piece in after:
            ids += piece
        read_at = len(ids) + len(tail) - 1
        ids += tail
        mask = [start <= i < start + len(target) for i in range(len(ids))]
        return _Encoded(ids, [0] * len(ids), mask, read_at)

    # -- model ---------------------------------------------------------------------------------

    def collate(self, encoded: Sequence[_Encoded], device: str) -> TextBatch:
        """Right-padded input tensors for a batch (positions come from the attention mask)."""
        import torch

        codec = self.codec()
        width = max(len(e.ids) for e in encoded)
        ids = torch.full((len(encoded), width), codec.pad_id, dtype=torch.long)
        types = torch.zeros((len(encoded), width), dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        target = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            n = len(e.ids)
            ids[row, :n] = torch.tensor(e.ids)
            types[row, :n] = torch.tensor(e.type_ids)
            attention[row, :n] = 1
            target[row, :n] = torch.tensor(e.target, dtype=torch.long)
        inputs = {"input_ids": ids.to(device), "attention_mask": attention.to(device)}
        if codec.use_type_ids:
            inputs["token_type_ids"] = types.to(device)
        read_at = torch.tensor([e.read_at for e in encoded], dtype=torch.long, device=device)
        return TextBatch(inputs=inputs, target=target.to(device), read_at=read_at)

    def run_model(self, model: Any, batch: TextBatch) -> Any:
        return model(**batch.inputs, output_hidden_states=self.settings.pooling == "last4_mean")

    def pool_outputs(self, outputs: Any, batch: TextBatch) -> Any:
        """[B, D] pooled states, differentiable (the fine-tuning stage trains through it)."""
        import torch
        import torch.nn.functional as F

        pooling = self.settings.pooling
        hidden = outputs.last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if pooling in ("cls", "prompt_mask"):
            return hidden[rows, batch.read_at]
        if pooling == "last4_mean":
            layers = outputs.hidden_states[1:][-4:]  # transformer layers only (index 0 is the embeddings)
            firsts = [F.layer_norm(layer[:, 0].float(), (layer.shape[-1],)) for layer in layers]
            return torch.stack(firsts).mean(dim=0).to(hidden.dtype)
        weights = (batch.inputs["attention_mask"] * batch.target).unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def pool(self, hidden: Any, attention: Any, target: Any) -> Any:
        """Mean over the target's tokens, then L2 norm (the sentence-transformers recipe)."""
        import torch

        weights = (attention * target).unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * weights).sum(dim=1)
        pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def extract(self, items: Sequence[TextItem]) -> np.ndarray:
        return self.extract_with_sequences(items)[0]

    def extract_with_sequences(self, items: Sequence[TextItem]) -> tuple[np.ndarray, list[np.ndarray] | None]:
        import torch

        enc = self._encoder()
        wants = self.wants_sequence
        if not items:
            return np.zeros((0, enc.hidden), dtype=np.float32), ([] if wants else None)
        for item in items:
            self.check(item)
        encoded = [self.encode(item) for item in items]
        out = np.zeros((len(items), enc.hidden), dtype=np.float32)
        sequences: list[np.ndarray] = [np.zeros((0, enc.hidden), np.float32)] * len(items)
        for rows in length_batches([len(e.ids) for e in encoded], int(self.settings.batch_size)):
            batch = self.collate([encoded[r] for r in rows], enc.device)
            with torch.inference_mode():
                outputs = self.run_model(enc.model, batch)
                pooled = self.pool_outputs(outputs, batch).float()
                if self.settings.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[rows] = pooled.cpu().numpy()
            if wants:
                hidden = outputs.last_hidden_state.float().cpu().numpy()
                target = batch.target.cpu().numpy().astype(bool)
                for k, row in enumerate(rows):
                    sequences[row] = cap_sequence(hidden[k][target[k]], int(self.settings.max_sequence))
        return out, (sequences if wants else None)


@dataclass(frozen=True)
class RobertaConfig(TextEncoderConfig):
    """A newer extractor than MiniLM: every field is part of its output config, and other defaults."""

    pooling: str = setting("cls", choices=POOLINGS)
    normalize: bool = False
    future_context: int = setting(0, min=0)
    batch_size: int = setting(16, min=1, runtime=True)
    max_length: int = setting(512, min=8)
    dtype: str = setting("float32", choices=DTYPES)
    sequence: bool = False
    max_sequence: int = setting(128, min=1)


class RobertaExtractor(TransformerTextExtractor):
    """RoBERTa/BERT-family encoders by hub name or local folder; `<s>` state by default (COSMIC)."""

    name = "roberta"
    default_model = "FacebookAI/roberta-large"
    Config = RobertaConfig

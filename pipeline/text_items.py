"""Each utterance's text as a `TextItem`, with the turns around it in its dialogue.

Read by the text extractors (`features`) and by `finetune_text`, so fine-tuning sees exactly the
inputs the extractor will encode.
"""

from __future__ import annotations

import pandas as pd

from extractors import TextItem


def text_items(manifest: pd.DataFrame, wanted: set[str], turns: int, future: int = 0) -> dict[str, TextItem]:
    """TextItems with up to `turns` previous and `future` following utterances of the dialogue
    (taken from the whole manifest, so context survives an utterance whose media failed)."""
    items: dict[str, TextItem] = {}
    ordered = manifest.sort_values(["dialogue_id", "turn"], kind="stable")
    for _, dialogue in ordered.groupby("dialogue_id", sort=False):
        turns_of = [
            ("" if pd.isna(row.speaker) else str(row.speaker), "" if pd.isna(row.text) else str(row.text))
            for row in dialogue.itertuples(index=False)
        ]
        for index, utt_id in enumerate(dialogue.utt_id):
            if utt_id in wanted:
                speaker, text = turns_of[index]
                context = tuple(turns_of[max(0, index - turns) : index]) if turns else ()
                following = tuple(turns_of[index + 1 : index + 1 + future]) if future else ()
                items[utt_id] = TextItem(utt_id, text, speaker, context, following)
    return items

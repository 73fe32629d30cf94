"""`merc predict VIDEO` (or `python -m pipeline.predict VIDEO`): emotions over time for one recording.

    merc predict talk.mp4 [--transcript talk.srt] [--model fusion_gru] [--out predictions/talk]
                          [--asr auto|whisper|pocketsphinx|none] [--asr-model FOLDER] [--project DIR]
                          [--boundaries auto|vad] [--asr-lm auto|generic]

Run from the project (or name it with --project): the model comes from its `artifacts/models/<name>`,
the face, speaker and cut settings from its `params.yaml`. Writes predictions.csv/.json, a timeline
PNG per speaker and annotated.mp4 to --out (default `predictions/<video name>`); see
`pipeline.predict.outputs`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline import logs
from pipeline.config import ConfigError
from pipeline.hooks import TqdmHook

log = logging.getLogger("pipeline.predict")
DEFAULT_MODEL = "fusion_gru"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"]:  # `merc predict ...`
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="merc predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path)
    parser.add_argument("--transcript", type=Path, default=None, help="SRT, VTT, or a CSV/TSV/Parquet table")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"a trained model's name (default {DEFAULT_MODEL})")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--asr", default="auto", help="auto | whisper | pocketsphinx | none")
    parser.add_argument("--asr-model", type=Path, default=None, help="a local speech-recognition model folder")
    parser.add_argument("--boundaries", default="auto",
                        help="auto: where utterances end as the project's `boundaries` stage learned it "
                             "(when it did); vad: every pause of the voice-activity detector ends one")
    parser.add_argument("--asr-lm", default="auto",
                        help="auto: PocketSphinx decodes with the project's language model of its train "
                             "transcripts (`asr_lm` stage) when it has one; generic: with the wheel's own")
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args(argv)
    logs.configure()
    from pipeline.predict.outputs import write_annotated_video, write_table, write_timelines
    from pipeline.predict.run import PredictOptions, predict

    out = options.out or Path("predictions") / options.video.stem
    try:
        out.mkdir(parents=True, exist_ok=True)
        with TqdmHook() as hook:
            result = predict(PredictOptions(options.video, out, options.model, options.transcript, options.asr,
                                            options.asr_model, options.project, options.workers,
                                            boundaries=options.boundaries, asr_lm=options.asr_lm), hook)
        written = write_table(result.frame, result.labels, result.info, out)
        written += write_timelines(result.frame, result.labels, result.info["duration"], out)
        video = write_annotated_video(options.video.resolve(), result.frame, result.labels, out / "work", out)
        written += [video] if video is not None else []
    except ConfigError as error:
        log.error("error: %s", error)
        return 2
    print(json.dumps({**result.info, "outputs": [str(p) for p in written]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

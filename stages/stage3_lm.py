"""Stage 3: train the semantic, coarse and fine language models, and the reading and transcription
LMs where lm.text is on (all of them unless --task is given)."""

import sys

from audiolm.lm.sequences import TASKS, TEXT_TASKS
from audiolm.pipeline import lm_stage
from audiolm.pipeline.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(lm_stage.run, __doc__, options={
        "--task": dict(dest="tasks", action="append", choices=TASKS + TEXT_TASKS,
                       help="train only this language model (repeatable; default: all three, and the two "
                            "text LMs with lm.text)")}))

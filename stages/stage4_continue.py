"""Stage 4: continue held-out prompts with the trained cascade, judge the voices, write the report."""

import sys

from audiolm.pipeline import continue_stage
from audiolm.pipeline.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(continue_stage.run, __doc__))

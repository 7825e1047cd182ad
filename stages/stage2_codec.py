"""Stage 2: train (or load) the acoustic codec and add acoustic codes to the token dataset."""

import sys

from audiolm.pipeline import codec_stage
from audiolm.pipeline.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(codec_stage.run, __doc__))

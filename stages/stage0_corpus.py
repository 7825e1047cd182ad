"""Stage 0: prepare the corpus (demo synthesis, a Hub dataset, a folder or a manifest)."""

import sys

from audiolm.pipeline import corpus_stage
from audiolm.pipeline.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(corpus_stage.run, __doc__))

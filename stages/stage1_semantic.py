"""Stage 1: fit the semantic tokenizer (features + k-means) and tokenize the corpus."""

import sys

from audiolm.pipeline import semantic_stage
from audiolm.pipeline.cli import stage_main

if __name__ == "__main__":
    sys.exit(stage_main(semantic_stage.run, __doc__))

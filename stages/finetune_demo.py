"""`make finetune-demo`: the demo model adapted to a voice it never trained on; prints the before / after table."""

import sys

import datasets

from audiolm.pipeline.finetune_demo import main

if __name__ == "__main__":
    datasets.disable_progress_bars()
    sys.exit(main())

"""`python -m dataset_assets.cli`: the same as the `dataset-assets` command."""

import sys

from dataset_assets.cli import main

sys.exit(main())

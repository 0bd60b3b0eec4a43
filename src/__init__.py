"""Image-classification research template: Lightning modules, data and Hydra entry points."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# configs/paths reads this, so runs and tests find data/ and logs/ whatever the working directory.
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))

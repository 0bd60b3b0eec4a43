"""Image-classification research template: Lightning modules, data and Hydra entry points."""

from pathlib import Path

# The repository root: configs/, data/ and logs/ are found from here, whatever the working folder.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

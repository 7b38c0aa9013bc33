"""Where the model data lives (the `tolk_models` package: profiles and the demo model)."""

from __future__ import annotations

import importlib
from pathlib import Path

_MODELS = Path(str(importlib.import_module("tolk_models").__file__)).parent
PROFILE_DIR = _MODELS / "profiles"
DEMO_DIR = _MODELS / "demo"

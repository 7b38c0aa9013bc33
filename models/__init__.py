"""tolk_models: prompt profiles (data) and the built-in demo model."""

from pathlib import Path

PROFILE_DIR = Path(__file__).parent / "profiles"
DEMO_DIR = Path(__file__).parent / "demo"

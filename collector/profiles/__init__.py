"""Device and session profiles: TOML presets (package data) and their validated model (`profile.py`)."""

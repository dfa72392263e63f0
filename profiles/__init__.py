"""Device and session profiles (TOML), shipped as package data."""

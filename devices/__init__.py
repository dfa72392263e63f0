"""Sources: one module per kind (LSL, Muse, XDF file, screen). Each yields records from devices.base."""

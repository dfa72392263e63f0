"""After the session: the kept captures read back, the offline review page and the CSV/EDF+ export."""

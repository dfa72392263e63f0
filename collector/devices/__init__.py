"""Sources: live LSL streams, Muse headsets through muselsl, screenshots, and recordings replayed as if
live. Each yields the records of collector.core.records.
"""

"""Recorded files of every format (XDF, muselsl and Mind Monitor CSV, EDF/BDF) read into one in-memory
recording model, made ready and replayed as a live source.
"""

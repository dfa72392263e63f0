"""Pure NumPy/SciPy: time repair, band powers, fit, chunking, session summary and the records that flow
between stages. Reads no files, no environment, no network.
"""

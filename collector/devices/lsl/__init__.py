"""Live LSL streams: finding them (discovery), reading one as an EEG source (source), and the marker
stream that goes with it (markers).
"""

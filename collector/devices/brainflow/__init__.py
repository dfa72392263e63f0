"""EEG boards driven by BrainFlow (OpenBCI, Muse over BLE, Neurosity, Unicorn, BrainBit, and its
synthetic and playback boards): the board table (boards) and the source (source).
"""

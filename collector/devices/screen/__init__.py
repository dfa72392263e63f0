"""Screenshots as evidence: settings, where the pixels come from (grabber, x11), the image steps
(image), and the source that captures at a steady cadence (source).
"""

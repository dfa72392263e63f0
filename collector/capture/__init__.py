"""The running session: a capture pipeline from sources through the core to the spool, the learner's
marks and screen pause, the live status view and the log layout.
"""

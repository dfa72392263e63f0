"""openlesson-collector: EEG and screen evidence for OpenLesson Performance Workspaces."""

__version__ = "0.1.0"

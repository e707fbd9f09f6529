"""xaikit: explain deep-learning models on medical images."""
__version__ = "0.1.0"

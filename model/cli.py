"""CLI declarations of train/evaluate/predict (filled in by the trainer work)."""
def register(commands):  # noqa: D103 - replaced by the trainer implementation
    pass

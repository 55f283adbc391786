"""CLI declarations of run/demo (filled in by the workflows work)."""
def register(commands):  # noqa: D103 - replaced by the workflows implementation
    pass

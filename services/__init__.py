"""The three wxstream services; each runs as `python -m services.<name>`."""

"""The checks, one module per family; each takes the ``Context`` and adds findings."""

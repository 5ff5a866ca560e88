"""Object storage: one contract (``base.py``), one module per backend."""

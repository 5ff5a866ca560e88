"""stolentee: self-hostable backend of a print-on-demand T-shirt shop."""

__version__ = "0.1.0"

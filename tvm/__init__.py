"""TVM: run untrusted code in many languages inside throw-away sandboxes."""

__version__ = "0.1.0"

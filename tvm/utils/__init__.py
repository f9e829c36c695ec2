"""Logging, subprocess and process-group helpers."""

"""The host API gateway: the public entry point in front of the workers."""

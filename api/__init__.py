"""The HTTP face: usage in, usage and amounts out, health and metrics."""

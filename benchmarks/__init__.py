"""Helpers for tests, benchmarks and demos that run real ComfyUI in process (not part of the node pack)."""

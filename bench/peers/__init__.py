"""Helpers for bench/containers.py: host cleanup, CNI, and the Docker and Podman peers."""

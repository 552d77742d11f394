"""Tests of the container drivers."""

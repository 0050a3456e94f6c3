"""Neighbour batches (see batches.py)."""

"""Verb negatives: the caption with one event replaced by another, the objects kept (issue 15)."""

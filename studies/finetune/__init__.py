"""Retrieval fine-tuning that helps: how many steps at which rate, and on clips pre-training never read."""

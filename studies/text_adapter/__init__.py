"""A trainable text adapter on the frozen text tower's tokens, for VTC (issue 15)."""

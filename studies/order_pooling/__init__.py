"""Order pooling: the VTC video feature adds a late-minus-early moment of the tokens (issue 15)."""

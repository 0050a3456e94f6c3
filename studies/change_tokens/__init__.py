"""Change tokens: each video patch also carries its difference from the frame before (issue 15)."""

"""Conv stem: each video patch embedded by a few stride-2 convolutions instead of one linear map (issue 15)."""

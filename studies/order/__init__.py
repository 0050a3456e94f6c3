"""The temporal-order study: what makes the model prefer a clip's own caption over the one
with its two events swapped (studies/order/README.md)."""

"""The unmasked-tuning study: do the last steps of pre-training without video masking close the
gap between training on a quarter of the patches and testing on all of them?
(studies/unmasked/README.md)"""

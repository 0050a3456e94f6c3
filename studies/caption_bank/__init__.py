"""The caption-bank study: VTC's video->text direction against every training caption seen
instead of the batch's 16 (studies/caption_bank/README.md)."""

"""LMAC-ZS: text-conditioned mask decoder, zero-shot loss, masking domains, Brain and trained-model loading."""

"""The EEG side of bci-dream: masked-signal encoder, conditioning and CLIP heads, checkpoints, subject profiles."""

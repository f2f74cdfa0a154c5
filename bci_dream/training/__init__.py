"""Training: datasets of encoder windows and EEG-image pairs, pretraining, fine-tuning."""

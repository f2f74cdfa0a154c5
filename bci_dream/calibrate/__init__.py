"""Calibration: stimulus sets, session protocols, per-subject profiles and headless per-subject fine-tuning."""

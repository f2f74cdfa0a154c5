"""Readers that turn recordings into arrays and markers."""

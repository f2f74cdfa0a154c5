"""The shared vocabulary at the bottom of every layer: errors, chunk and stream types, the ring buffer,
the project-wide defaults and small file helpers. Imports nothing else from bci_dream."""

"""bci-dream: live EEG to images.

The streaming core (``bci_dream.acquisition``, ``bci_dream.signal``) turns headsets, LSL streams and
recorded ``.xdf`` sessions into filtered ring buffers and fixed-size windows for the EEG encoder.
"""

__version__ = "0.1.0"

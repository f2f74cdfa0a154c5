"""The desktop app: a Qt view over the headless streaming core and engine.

Qt (PySide6, pyqtgraph) is imported only inside this subpackage. The GUI thread reads ring-buffer
copies on a timer and receives frames by signal; it never pulls from a device or runs a model.
"""

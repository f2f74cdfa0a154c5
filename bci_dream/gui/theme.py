"""The app's two themes, dark and light: Qt's palette for the widgets and pyqtgraph's colours for the plots."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtGui, QtWidgets

#: The themes, and the plots' background and foreground in each.
THEMES: dict[str, tuple[str, str]] = {"dark": ("k", "w"), "light": ("w", "k")}
DEFAULT = "dark"
#: QSettings key of the chosen theme.
SETTINGS_KEY = "theme"

# Okabe & Ito's colours, told apart with the common colour-vision deficiencies, in both themes.
#: Per signal-quality status (:data:`bci_dream.signal.quality.STATUSES`): the traces' tints, the head map's spots.
QUALITY_COLORS = {"good": "#0072B2", "line_noise": "#E69F00", "flat": "#999999", "railed": "#D55E00",
                  "high_amplitude": "#CC79A7"}
#: Per rating (a channel's contact in the signal check, an electrode's impedance; "none": not measured).
RATING_COLORS = {"good": "#009E73", "fair": "#E69F00", "poor": "#D55E00", "none": "#999999"}


def theme_name(value: object) -> str:
    """A remembered value as a theme name (anything unknown: :data:`DEFAULT`)."""
    return str(value) if str(value) in THEMES else DEFAULT


def _dark_palette() -> QtGui.QPalette:
    role, color = QtGui.QPalette.ColorRole, QtGui.QColor
    palette = QtGui.QPalette()
    for r, c in ((role.Window, color(45, 45, 48)), (role.WindowText, color(220, 220, 220)),
                 (role.Base, color(30, 30, 32)), (role.AlternateBase, color(45, 45, 48)),
                 (role.ToolTipBase, color(45, 45, 48)), (role.ToolTipText, color(220, 220, 220)),
                 (role.Text, color(220, 220, 220)), (role.Button, color(55, 55, 58)),
                 (role.ButtonText, color(220, 220, 220)), (role.BrightText, color(255, 255, 255)),
                 (role.Highlight, color(0, 114, 178)), (role.HighlightedText, color(255, 255, 255)),
                 (role.Link, color(86, 180, 233)), (role.PlaceholderText, color(140, 140, 140))):
        palette.setColor(r, c)
    disabled = QtGui.QPalette.ColorGroup.Disabled
    for r in (role.Text, role.ButtonText, role.WindowText):
        palette.setColor(disabled, r, color(120, 120, 120))
    return palette


def apply_theme(name: str) -> None:
    """Use theme ``name`` for the application's widgets and for every plot made from now on (Fusion style, so
    the palette applies the same on every platform)."""
    app = QtWidgets.QApplication.instance()
    name = theme_name(name)
    if app is not None:
        app.setStyle("Fusion")
        app.setPalette(_dark_palette() if name == "dark" else app.style().standardPalette())
    background, foreground = THEMES[name]
    pg.setConfigOptions(background=background, foreground=foreground)


def restyle_plots(root: QtWidgets.QWidget, name: str) -> None:
    """Give the plots already under ``root`` the colours of theme ``name`` (background, axes and their labels)."""
    background, foreground = THEMES[theme_name(name)]
    for widget in root.findChildren(pg.PlotWidget):
        widget.setBackground(background)
        item = widget.getPlotItem()
        for side in ("left", "bottom", "right", "top"):
            axis = item.getAxis(side)
            axis.setPen(foreground)
            axis.setTextPen(foreground)

"""The newest generated image, large, with a strip of recent ones under it."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from bci_dream.gui.panel import Panel


def to_qimage(image) -> QtGui.QImage:
    """A PIL RGB image → a QImage that owns a copy of its pixels."""
    image = image.convert("RGB")
    data = image.tobytes()
    qimage = QtGui.QImage(data, image.width, image.height, 3 * image.width, QtGui.QImage.Format.Format_RGB888)
    return qimage.copy()  # (the bytes object is not kept alive by QImage)


class ImagePanel(Panel):
    """Shows the newest image scaled to the panel, the ``labels`` over it, and the last ``history`` images.

    Attributes:
        images_shown: how many images were shown since the start.
        current: the newest PIL image (None before the first).
    """

    title = "images"
    area = "right"
    stretch = 2

    def __init__(self, history: int = 8, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.images_shown = 0
        self.current = None
        self._pixmap: QtGui.QPixmap | None = None
        self.view = QtWidgets.QLabel(alignment=QtCore.Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(256, 256)
        self.view.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Ignored)
        self.view.setStyleSheet("background: #111; color: #888;")
        self.view.setText("no image yet: connect a device and start generating")
        self.label = QtWidgets.QLabel()
        self.label.setStyleSheet("color: #fc0; font-weight: bold;")
        self.strip = QtWidgets.QHBoxLayout()
        self.strip.setSpacing(4)
        self._thumbs: list[QtWidgets.QLabel] = []
        for _ in range(history):
            thumb = QtWidgets.QLabel()
            thumb.setFixedSize(72, 72)
            thumb.setStyleSheet("background: #222;")
            self.strip.addWidget(thumb)
            self._thumbs.append(thumb)
        self.strip.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.view, 1)
        layout.addLayout(self.strip)

    def set_labels(self, labels: list[str]) -> None:
        """The persistent labels ("untrained preview model", ...) shown above the image."""
        self.label.setText(" · ".join(labels))
        self.label.setVisible(bool(labels))

    def show_frame(self, frame) -> None:
        self.show_image(frame.image)

    def show_image(self, image) -> None:
        """Show a PIL image as the newest one and push the previous one into the strip."""
        if self._pixmap is not None:
            for i in range(len(self._thumbs) - 1, 0, -1):
                self._thumbs[i].setPixmap(self._thumbs[i - 1].pixmap())
            self._thumbs[0].setPixmap(self._pixmap.scaled(72, 72, QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                                          QtCore.Qt.TransformationMode.SmoothTransformation))
        self.current = image
        self._pixmap = QtGui.QPixmap.fromImage(to_qimage(image))
        self._rescale()
        self.images_shown += 1

    def clear(self) -> None:
        self.current, self._pixmap = None, None
        self.view.clear()
        for thumb in self._thumbs:
            thumb.clear()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is not None:
            self.view.setPixmap(self._pixmap.scaled(self.view.size(), QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                                                    QtCore.Qt.TransformationMode.FastTransformation))

"""Creative mode in the window: the prompt, the EEG influence, the baseline, the live features and the blend.

The panel shows what steers the images — every band-power feature's live value and z-score, the blend's weights —
and edits what a user shapes: the prompt (applied on Enter) and the EEG influence (applied as the slider moves).
It emits what the user asks for; the window applies it (:class:`~bci_dream.runtime.creative.Creative`).
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from bci_dream.gui.panel import Panel
from bci_dream.runtime.steering import STEERED_LABEL
from bci_dream.signal.feature_tracker import BASELINE_S

#: Features the table shows first (the rest follow, alphabetically).
SHOWN_FIRST = ("delta", "theta", "alpha", "beta", "gamma", "alpha_asymmetry", "engagement", "artefact")


class CreativePanel(Panel):
    """Prompt box, EEG-influence slider, baseline button, feature table and blend weights (see the module docstring).

    Signals:
        prompt_changed(str): Enter pressed in the prompt box ("" for none).
        influence_changed(float): the slider moved (0-1).
        baseline_requested(float): the baseline button, with its length in seconds.
        sham_changed(bool): the sham switch (EEG from 30 s earlier instead of the live EEG).
    """

    title = "creative"
    area = "right"
    stretch = 0

    prompt_changed = QtCore.Signal(str)
    influence_changed = QtCore.Signal(float)
    baseline_requested = QtCore.Signal(float)
    sham_changed = QtCore.Signal(bool)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompt = QtWidgets.QLineEdit()
        self.prompt.setPlaceholderText("a prompt the EEG is blended with (Enter applies it)")
        self.prompt.returnPressed.connect(lambda: self.prompt_changed.emit(self.prompt.text().strip()))
        self.influence = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.influence.setRange(0, 100)
        self.influence.setValue(100)
        self.influence.setToolTip("the EEG's share of the conditioning: 0 the prompt alone, 100 % the EEG alone")
        self.influence_label = QtWidgets.QLabel("EEG 100 %")
        self.influence.valueChanged.connect(self._on_slider)
        self.baseline = QtWidgets.QPushButton(f"Record baseline ({BASELINE_S:g} s)")
        self.baseline.setToolTip("sit still, eyes open, for the features' reference")
        self.baseline.clicked.connect(lambda: self.baseline_requested.emit(BASELINE_S))
        self.sham = QtWidgets.QCheckBox("sham")
        self.sham.setToolTip("a control: feed the EEG model (and the steering) EEG from 30 s earlier in the session "
                             "instead of the live EEG, to see what the live brain adds; every frame records it")
        self.sham.toggled.connect(self.sham_changed.emit)
        self.reference = QtWidgets.QLabel("features: no stream")
        self.table = QtWidgets.QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["feature", "value", "z"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMaximumHeight(170)
        self.weights = QtWidgets.QLabel("")
        self.weights.setWordWrap(True)
        self.mode = QtWidgets.QLabel("")
        self.mode.setStyleSheet("color: #fc0;")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("EEG influence"))
        row.addWidget(self.influence, 1)
        row.addWidget(self.influence_label)
        row.addWidget(self.sham)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.prompt)
        layout.addLayout(row)
        layout.addWidget(self.mode)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.reference, 1)
        top.addWidget(self.baseline)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addWidget(self.weights)
        self.monitor = None
        self.features_shown = 0

    def _on_slider(self, value: int) -> None:
        self.influence_label.setText(f"EEG {value} %")
        self.influence_changed.emit(value / 100)

    def set_session(self, prompt: str | None, influence: float, describe: str = "", sham: bool | None = None) -> None:
        """Show a session's creative settings (without emitting them back)."""
        self.prompt.setText(prompt or "")
        if sham is not None:
            self.sham.blockSignals(True)
            self.sham.setChecked(sham)
            self.sham.blockSignals(False)
        self.influence.blockSignals(True)
        self.influence.setValue(round(100 * influence))
        self.influence.blockSignals(False)
        self.influence_label.setText(f"EEG {round(100 * influence)} %")
        self.mode.setText(describe)

    def set_monitor(self, monitor) -> None:
        """Show the features of ``monitor`` (a :class:`~bci_dream.runtime.feature_monitor.FeatureMonitor`), or none."""
        self.monitor = monitor

    def set_labels(self, labels: list[str]) -> None:
        steered = STEERED_LABEL in labels
        self.weights.setVisible(True)
        if not steered:
            self.weights.setText("")

    def show_frame(self, frame) -> None:
        weights = frame.record.prompt_weights
        if weights:
            self.weights.setText("blend: " + " · ".join(f"{w:.0%} {p!r}" for p, w in weights.items()))

    def update_status(self, status) -> None:
        monitor = self.monitor
        if status is None or monitor is None or monitor.latest is None:
            self.reference.setText("features: no stream" if status is None else "features: waiting for 2 s of signal")
            return
        tracked = monitor.latest
        state = monitor.tracker.baseline_state
        if state == "recording":
            done = monitor.tracker.baseline_progress(tracked.t)
            self.reference.setText(f"recording the baseline … {100 * done:.0f} %")
        else:
            self.reference.setText("z against the baseline" if tracked.reference == "baseline"
                                   else "z against the running session mean (no baseline yet)")
        names = [n for n in SHOWN_FIRST if n in tracked.smoothed] + \
            sorted(n for n in tracked.smoothed if n not in SHOWN_FIRST)
        self.table.setRowCount(len(names))
        for row, name in enumerate(names):
            for col, text in enumerate((name, f"{tracked.smoothed[name]:.3f}", f"{tracked.z.get(name, 0.0):+.2f}")):
                item = self.table.item(row, col)
                if item is None:
                    self.table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
                else:
                    item.setText(text)
        self.features_shown += 1

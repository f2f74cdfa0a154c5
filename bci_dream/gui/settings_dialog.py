"""The settings dialog: filters, windowing, generation (steps, resolution, seed, similarity gate) and the
conditioning route (route, IP-Adapter strength, image-bank prior). The prompt is the creative panel's."""

from __future__ import annotations

from dataclasses import dataclass, fields

from PySide6 import QtCore, QtWidgets

from bci_dream.acquisition.filter_settings import FilterSettings
from bci_dream.core import defaults


@dataclass
class Settings:
    """What the dialog edits; remembered between runs.

    Attributes:
        device_filters: use each device profile's filters (the three below are then not used).
        bandpass_low, bandpass_high: band-pass edges in Hz (0 and 0: no band-pass).
        notch: line-noise notch in Hz (0: none).
        hop: seconds between windows sent to the encoder.
        steps: denoising steps (0: the model's own, 1 for SD-Turbo).
        size: image side in pixels (0: the model's own; 256 on a CPU).
        seed: the session's noise seed.
        similarity: skip a window whose embedding has at least this cosine similarity to the last (1.0: never).
        interpolate: frames generated between successive embeddings.
        route: the conditioning route (one of :data:`~bci_dream.core.defaults.ROUTES`; "": the EEG model's own,
            else the diffusion model's).
        ip_adapter_scale: the IP-Adapter's strength on the ip-adapter route.
        bank_k, bank_temperature: the image-bank prior's top-k and softmax temperature.
    """

    device_filters: bool = True
    bandpass_low: float = defaults.BANDPASS_HZ[0]
    bandpass_high: float = defaults.BANDPASS_HZ[1]
    notch: float = defaults.NOTCH_HZ
    hop: float = defaults.HOP_S
    steps: int = 0
    size: int = 0
    seed: int = 0
    similarity: float = defaults.SIMILARITY_THRESHOLD
    interpolate: int = 0
    route: str = ""
    ip_adapter_scale: float = 1.0
    bank_k: int = defaults.BANK_K
    bank_temperature: float = defaults.BANK_TEMPERATURE

    def route_fields(self) -> tuple:
        """What the diffusion model is loaded for (a change reloads it)."""
        return self.route, self.ip_adapter_scale

    def filters(self) -> FilterSettings:
        """The filters these settings name (used when ``device_filters`` is off)."""
        band = (self.bandpass_low, self.bandpass_high) if self.bandpass_high > self.bandpass_low > 0 else None
        return FilterSettings(band, self.notch or None)

    def save(self, store: QtCore.QSettings) -> None:
        for f in fields(self):
            store.setValue(f"settings/{f.name}", getattr(self, f.name))

    @classmethod
    def load(cls, store: QtCore.QSettings) -> "Settings":
        out = cls()
        for f in fields(cls):
            value = store.value(f"settings/{f.name}")
            if value is not None:
                try:
                    kind = type(getattr(out, f.name))
                    setattr(out, f.name, value in (True, "true", "1", 1) if kind is bool else kind(value))
                except (TypeError, ValueError):
                    pass  # (a value from an older version: keep the default)
        return out


class SettingsDialog(QtWidgets.QDialog):
    """Edits a :class:`Settings`; :meth:`settings` gives the result after ``accept()``."""

    def __init__(self, settings: Settings, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("bci-dream settings")
        form = QtWidgets.QFormLayout(self)

        def spin(value, lo, hi, step, suffix="", decimals=None):
            box = QtWidgets.QDoubleSpinBox() if decimals is not None else QtWidgets.QSpinBox()
            if decimals is not None:
                box.setDecimals(decimals)
            box.setRange(lo, hi)
            box.setSingleStep(step)
            box.setSuffix(suffix)
            box.setValue(value)
            return box

        self.device_filters = QtWidgets.QCheckBox("the device profile's filters", checked=settings.device_filters)
        self.low = spin(settings.bandpass_low, 0, 100, 0.5, " Hz", 1)
        self.high = spin(settings.bandpass_high, 0, 500, 1, " Hz", 1)
        self.notch = QtWidgets.QComboBox()
        for label, value in (("none", 0.0), ("50 Hz", 50.0), ("60 Hz", 60.0)):
            self.notch.addItem(label, value)
        self.notch.setCurrentIndex(max(self.notch.findData(float(settings.notch)), 0))
        self.hop = spin(settings.hop, 0.05, 5, 0.05, " s", 2)
        self.steps = spin(settings.steps, 0, 50, 1)
        self.steps.setSpecialValueText("model's own")
        self.size = spin(settings.size, 0, 1024, 64, " px")
        self.size.setSpecialValueText("model's own")
        self.seed = spin(settings.seed, 0, 2**31 - 1, 1)
        self.similarity = spin(settings.similarity, 0, 1, 0.005, "", 3)
        self.interpolate = spin(settings.interpolate, 0, 8, 1)
        self.route = QtWidgets.QComboBox()
        self.route.addItem("the EEG model's own", "")
        for name in defaults.ROUTES:
            self.route.addItem(name, name)
        self.route.setCurrentIndex(max(self.route.findData(settings.route), 0))
        self.route.setToolTip("dreamdiffusion: the EEG model's prompt embeddings in the UNet's cross-attention; "
                              "ip-adapter: its CLIP image embedding through an IP-Adapter on a frozen model; "
                              "retrieval: the nearest image of the bank itself")
        self.ip_adapter_scale = spin(settings.ip_adapter_scale, 0, 2, 0.05, "", 2)
        self.bank_k = spin(settings.bank_k, 1, 100, 1)
        self.bank_temperature = spin(settings.bank_temperature, 0.001, 10, 0.01, "", 3)
        clip_only = (self.ip_adapter_scale, self.bank_k, self.bank_temperature)
        self.route.currentIndexChanged.connect(lambda _: self._enable_route_fields(clip_only))
        self._enable_route_fields(clip_only)
        form.addRow("filters", self.device_filters)
        for widget in (self.low, self.high, self.notch):
            widget.setEnabled(not settings.device_filters)
            self.device_filters.toggled.connect(lambda on, w=widget: w.setEnabled(not on))
        form.addRow("band-pass low", self.low)
        form.addRow("band-pass high (0: off)", self.high)
        form.addRow("notch", self.notch)
        form.addRow("hop between windows", self.hop)
        form.addRow("window", QtWidgets.QLabel("set by the EEG model (its checkpoint)"))
        form.addRow("denoising steps", self.steps)
        form.addRow("image size", self.size)
        form.addRow("noise seed", self.seed)
        form.addRow("similarity gate (1: off)", self.similarity)
        form.addRow("interpolated frames", self.interpolate)
        form.addRow("conditioning route", self.route)
        form.addRow("IP-Adapter strength", self.ip_adapter_scale)
        form.addRow("bank images mixed (k)", self.bank_k)
        form.addRow("bank temperature", self.bank_temperature)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _enable_route_fields(self, widgets) -> None:
        """The CLIP routes' fields are editable unless the dreamdiffusion route is chosen explicitly."""
        for widget in widgets:
            widget.setEnabled(self.route.currentData() != defaults.ROUTES[0])

    def settings(self) -> Settings:
        return Settings(device_filters=self.device_filters.isChecked(), bandpass_low=self.low.value(),
                        bandpass_high=self.high.value(), notch=float(self.notch.currentData()), hop=self.hop.value(),
                        steps=self.steps.value(),
                        size=self.size.value(), seed=self.seed.value(), similarity=self.similarity.value(),
                        interpolate=self.interpolate.value(), route=str(self.route.currentData()),
                        ip_adapter_scale=self.ip_adapter_scale.value(),
                        bank_k=self.bank_k.value(), bank_temperature=self.bank_temperature.value())

"""The channel naming a checkpoint was trained with, saved in its meta and used again where it fits."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bci_dream.signal.channels import ChannelNaming, ChannelNamingError

log = logging.getLogger(__name__)

#: Key of the naming in a checkpoint's (and a subject profile's) meta.
META_KEY = "channel_naming"


def saved_naming(raw_config: Mapping) -> ChannelNaming | None:
    """The naming stored in a checkpoint's raw config (``read_config``), or None."""
    data = (raw_config.get("meta") or {}).get(META_KEY)
    return ChannelNaming.from_dict(data) if data else None


def naming_that_fits(naming: ChannelNaming | None, labels: Sequence[str]) -> ChannelNaming | None:
    """``naming`` when it applies to a stream with ``labels`` (the same channel count, or labels it has positions
    for), else None (logged)."""
    if naming is None:
        return None
    try:
        naming.apply(labels)
    except ChannelNamingError as e:
        log.info("the checkpoint's channel naming does not fit this stream (%s); the stream's own labels are used", e)
        return None
    return naming

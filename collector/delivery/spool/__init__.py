"""The durable on-disk spool (SQLite): every chunk is written here before any network call.
`Spool` (spool.py) is composed of this package's modules; schema.py documents the on-disk layout.
"""

from collector.delivery.spool.items import LAST_STREAM_IDS, DuplicateChunkError, SpoolItem
from collector.delivery.spool.lock import DeliveryBusyError
from collector.delivery.spool.losses import LOSS_REASONS, MAX_DROP_CHUNKS, Loss
from collector.delivery.spool.reserve import RESERVE_BYTES
from collector.delivery.spool.schema import DB_NAME, LOCK_NAME, RESERVE_NAME, damaged_advice
from collector.delivery.spool.spool import DEFAULT_MAX_BYTES, SCREEN_LIMIT_RATIO, Spool
from collector.delivery.spool.status import CaptureDelivery

__all__ = [
    "DB_NAME",
    "DEFAULT_MAX_BYTES",
    "LAST_STREAM_IDS",
    "LOCK_NAME",
    "LOSS_REASONS",
    "MAX_DROP_CHUNKS",
    "RESERVE_BYTES",
    "RESERVE_NAME",
    "SCREEN_LIMIT_RATIO",
    "CaptureDelivery",
    "DeliveryBusyError",
    "DuplicateChunkError",
    "Loss",
    "Spool",
    "SpoolItem",
    "damaged_advice",
]

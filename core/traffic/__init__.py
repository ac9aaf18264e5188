"""Traffic logging: the rows a router writes and the writer that batches them.

- `core.traffic.records`: `TrafficRecord`, `FeedbackRecord` and their spill-line encoding;
- `core.traffic.spill`: the spill directory (append, claim for replay, progress notes);
- `core.traffic.writer`: `TrafficWriter`, the buffered batch writer with spill and replay.

The public names are re-exported here: `from core.traffic import TrafficWriter`.
"""

from core.traffic.records import FeedbackRecord, Record, TrafficRecord
from core.traffic.spill import REJECTED_PREFIX, SPILL_PREFIX
from core.traffic.writer import TrafficWriter, WriterStats

__all__ = [
    "REJECTED_PREFIX",
    "SPILL_PREFIX",
    "FeedbackRecord",
    "Record",
    "TrafficRecord",
    "TrafficWriter",
    "WriterStats",
]

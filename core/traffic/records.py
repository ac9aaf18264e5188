"""The rows a router logs (`TrafficRecord`, `FeedbackRecord`) and their spill-line encoding.

The records are NamedTuples on purpose: the writer hands them to `COPY ... write_row` and
to `executemany` as they are, and slices them to reformat the timestamp, with no per-row
conversion. Build them by keyword; the field order is the column order of COPY.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple


class TrafficRecord(NamedTuple):
    """One row of the `traffic` table (field order = column order of COPY)."""

    request_id: str
    ts: datetime
    env: str
    user_id: str | None
    rollout_id: int | None
    model_name: str
    model_version: str
    role: str
    input_text: str
    output: str | None
    latency_ms: float
    error: str | None
    state_key: str | None = None
    """The release state the answer was read from (None: the model reads no state)."""


class FeedbackRecord(NamedTuple):
    """One row of the `feedback` table."""

    request_id: str
    ts: datetime
    kind: str
    value: str


Record = TrafficRecord | FeedbackRecord

TRAFFIC_COLUMNS = TrafficRecord._fields
FEEDBACK_COLUMNS = FeedbackRecord._fields


def encode_record(record: Record) -> str:
    """One spill line: `["t" | "f", ...values]`, timestamps in ISO 8601."""
    if type(record) is TrafficRecord:
        return json.dumps(["t", *record[:1], record.ts.isoformat(), *record[2:]])
    return json.dumps(["f", record[0], record.ts.isoformat(), *record[2:]])


def decode_record(line: str) -> Record:
    """Inverse of `encode_record`.

    Raises:
        ValueError: the line is not a spill record.
    """
    item = json.loads(line)
    kind, request_id, ts, *rest = item
    when = datetime.fromisoformat(ts)
    if kind == "t" and len(TRAFFIC_COLUMNS) - 3 <= len(rest) <= len(TRAFFIC_COLUMNS) - 2:
        return TrafficRecord(request_id, when, *rest)  # spilled before state_key: None
    if kind == "f" and len(rest) == len(FEEDBACK_COLUMNS) - 2:
        return FeedbackRecord(request_id, when, *rest)
    raise ValueError(f"not a spill record: {line[:80]!r}")

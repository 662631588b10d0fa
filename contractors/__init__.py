"""Contractor adapters: how Kerbside talks to outside organisations that do the work.

Importable without `server/` (a test checks it). The server's outbox worker calls
`registry.get_adapter(contractor.adapter, contractor.config)` and then `submit` / `cancel` / `add_note`;
its inbound path calls `parse_webhook` (push) or `fetch_updates` (poll) and feeds every
`StatusUpdate` through one deduplicating path keyed on `update_id`.
"""
from contractors.base import (
    OUR_STATUSES,
    ContractorAdapter,
    ContractorError,
    ContractorNote,
    PayloadError,
    StatusMapError,
    StatusUpdate,
    SubmitResult,
    UpdateBatch,
    WorkOrder,
)
from contractors.registry import get_adapter
from contractors.signing import SignatureError

__all__ = [
    "OUR_STATUSES", "ContractorAdapter", "ContractorError", "ContractorNote", "PayloadError", "SignatureError", "StatusMapError",
    "StatusUpdate", "SubmitResult", "UpdateBatch", "WorkOrder", "get_adapter",
]

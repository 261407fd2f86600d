"""The audit trail: one JSON line per call, never a value, a token or key material."""

import json
import logging
import time
from dataclasses import asdict, dataclass

audit_log = logging.getLogger("strongroom.audit")


@dataclass
class AuditRecord:
    caller: str
    vault: str
    operation: str
    object: str
    version: str
    outcome: int
    latency_ms: float

    def emit(self) -> None:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} | asdict(self)
        audit_log.info(json.dumps(line, separators=(",", ":")))

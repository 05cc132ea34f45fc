"""What the work plane counts of workload streams, and how the agent names it in metrics.

Per Service: streams opened (as caller and as server), bytes each way; refusals by reason
(`handshake.REFUSALS`), on either side. The work plane reports the counts at every sync
(`sync.Report.streams`); `beemesh metrics` shows them.
"""

from __future__ import annotations

REFUSED = "refused"  # the key of the refusal counts in a report
MAX_SERVICES = 1024  # counted Services; more are summed under "other"

STREAM_COUNTERS = {  # counter -> metric
    "opened": "workload_streams_opened",
    "served": "workload_streams_served",
    "bytes_out": "workload_stream_bytes_sent",
    "bytes_in": "workload_stream_bytes_received",
    "on_channel": "workload_streams_on_channel",
}
STREAM_METRICS = {
    "workload_streams_opened": "workload streams this machine's pods opened, by Service",
    "workload_streams_served": "workload streams this machine's replicas answered, by Service",
    "workload_stream_bytes_sent": "bytes pods of this machine sent on workload streams",
    "workload_stream_bytes_received": "bytes pods of this machine received on workload streams",
    "workload_streams_on_channel": "workload streams between machines carried on their own "
                                   "encrypted TCP channel (the others on libp2p streams)",
}


class Counters:
    def __init__(self) -> None:
        self.services: dict[str, dict[str, int]] = {}
        self.refused: dict[str, int] = {}

    def add(self, service: str, counter: str, n: int = 1) -> None:
        if service not in self.services and len(self.services) >= MAX_SERVICES:
            service = "other"
        counts = self.services.setdefault(service, dict.fromkeys(STREAM_COUNTERS, 0))
        counts[counter] += n

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def report(self) -> dict[str, dict[str, int]]:
        return {**{k: dict(v) for k, v in self.services.items()}, REFUSED: dict(self.refused)}

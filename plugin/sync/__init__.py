"""The sync engine: one run of "Outreach Send/Receive" (run.py) with its stages — send
(Workbooks → Outreach, send/) and, beside it, receive (Outreach → Workbooks, receive/).
docs/architecture.md shows the tree and the flow of one run."""
from .context import SyncSettings
from .report import KindCounts, RunReport
from .run import SyncRun

__all__ = ["SyncRun", "SyncSettings", "RunReport", "KindCounts"]

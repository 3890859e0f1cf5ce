"""Local emulators of the Workbooks and Outreach APIs (DESIGN.md §7).

    python -m tools.emulators workbooks --port 0
    python -m tools.emulators outreach --port 0

Importable for tests: `from tools.emulators import serve, WorkbooksEmulator, OutreachEmulator`.
"""
from .core import Emulator, FaultRule, ServerHandle, serve

__all__ = ["Emulator", "FaultRule", "ServerHandle", "serve", "WorkbooksEmulator", "OutreachEmulator"]


def __getattr__(name):  # lazy, so one emulator can be used while the other is being changed
    if name == "WorkbooksEmulator":
        from .workbooks import WorkbooksEmulator
        return WorkbooksEmulator
    if name == "OutreachEmulator":
        from .outreach import OutreachEmulator
        return OutreachEmulator
    raise AttributeError(name)

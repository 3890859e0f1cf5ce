"""Shared fixtures: the two emulators served over real HTTP on loopback."""
from __future__ import annotations

import pytest

from tools.emulators.core import ServerHandle


@pytest.fixture
def workbooks_server():
    """A fresh Workbooks emulator; `.url` is its base URL and `.app` the WorkbooksEmulator."""
    from tools.emulators.workbooks import WorkbooksEmulator
    with ServerHandle(WorkbooksEmulator()) as handle:
        yield handle
        assert not handle.app.internal_errors, handle.app.internal_errors


@pytest.fixture
def outreach_server():
    """A fresh Outreach emulator; `.url` is its base URL (API under /api/v2, OAuth under /oauth)."""
    from tools.emulators.outreach import OutreachEmulator
    with ServerHandle(OutreachEmulator()) as handle:
        yield handle
        assert not handle.app.internal_errors, handle.app.internal_errors

#!/usr/bin/env python3
"""The "Outreach Send/Receive" scheduled process, run by Workbooks every minute.

    python scripts/outreach_send_receive.py [--params FILE]

Everything happens in plugin/runner.py; this file only makes the bundle importable and exits with
its code (0 done, 1 try again later, 2 a person must act).
"""
import sys
from pathlib import Path

# Workbooks runs the script by path: the bundle root (holding plugin/) is its parent folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugin.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

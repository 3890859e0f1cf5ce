#!/usr/bin/env python3
"""Install, check or remove the Outreach Sync plugin in a Workbooks database.

    python scripts/outreach_install.py [--params FILE] [--check | --uninstall [--purge]]
                                       [--client-id ID --client-secret SECRET]

Everything happens in plugin/install.py; this file only makes the bundle importable and exits
with its code (0 done, 1 try again, 2 a person must act).
"""
import sys
from pathlib import Path

# Workbooks runs the script by path: the bundle root (holding plugin/) is its parent folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugin.install import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

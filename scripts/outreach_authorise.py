#!/usr/bin/env python3
"""The "Outreach Authorisation" web process: connect, show or revoke the Outreach account.

Workbooks passes the request in the parameters (`_query_*`, `_post_*`, `_server_*`); the page is
printed as `[header] …` lines followed by the body. Everything happens in plugin/authorise.py.
"""
import sys
from pathlib import Path

# Workbooks runs the script by path: the bundle root (holding plugin/) is its parent folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugin.authorise import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`python -m tools.emulators {workbooks|outreach} --port N [--set switch=value ...] [--seed FILE]`

Prints the base URL as the first line of stdout, then serves until interrupted."""
from __future__ import annotations

import argparse
import json
import signal
import sys

from .core import ServerHandle


def _parse_switch(text: str):
    name, _, raw = text.partition("=")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.emulators", description=__doc__)
    parser.add_argument("api", choices=["workbooks", "outreach"])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--set", action="append", default=[], metavar="SWITCH=VALUE",
                        help="set a behaviour switch (JSON value), e.g. --set strict_content_type=false")
    parser.add_argument("--seed", metavar="FILE", help="JSON file of records to load at start")
    args = parser.parse_args(argv)

    if args.api == "workbooks":
        from .workbooks import WorkbooksEmulator as cls
    else:
        from .outreach import OutreachEmulator as cls
    config = dict(_parse_switch(s) for s in args.set)
    unknown = sorted(set(config) - set(cls.default_config))
    if unknown:
        parser.error(f"unknown switches {unknown}; known: {sorted(cls.default_config)}")
    app = cls(**config)
    server = ServerHandle(app, args.port)
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            app.seed(json.load(handle))
    print(server.url, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

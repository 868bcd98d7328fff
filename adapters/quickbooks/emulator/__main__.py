"""``python -m adapters.quickbooks.emulator [--host H] [--port P] [--realm ID]``: run until Ctrl-C.

With ``--realm``, a realm is created at start and its credentials printed as JSON, so a shell session can
use the emulator without touching the admin API first.
"""

from __future__ import annotations

import argparse
import json
import sys

from .server import run_emulator


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m adapters.quickbooks.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--realm", help="create this realm at start and print its credentials")
    args = parser.parse_args(argv)
    server = run_emulator(args.host, args.port)
    print(json.dumps({"url": server.url, "base_api_url": server.base_api_url, "discovery_url": server.discovery_url}))
    if args.realm:
        print(json.dumps(server.create_realm(realm_id=args.realm)))
    sys.stdout.flush()
    server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

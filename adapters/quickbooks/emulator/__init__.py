"""A stateful QuickBooks Online Accounting API v3 emulator over real HTTP, for end-to-end tests of the
python-quickbooks adapter with no QBO account.

Start one in-process::

    server = run_emulator("127.0.0.1", 0)          # background thread; server.stop() when done
    creds = server.create_realm(realm_id="123")    # client id/secret, access + refresh token
    # python-quickbooks: QuickBooks.api_url must return server.base_api_url,
    # AuthClient(environment=server.discovery_url), and OAUTHLIB_INSECURE_TRANSPORT=1 (loopback only).

or from a shell: ``python -m adapters.quickbooks.emulator --port 8765``. The admin API is documented in
``admin.py``; the rules the emulated company enforces in ``store.py``; injectable faults in ``faults.py``.
"""

from .server import EmulatorServer, EmulatorState, Settings, run_emulator

__all__ = ["EmulatorServer", "EmulatorState", "Settings", "run_emulator"]

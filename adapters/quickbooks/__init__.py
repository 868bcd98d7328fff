"""QuickBooks Online adapters: the shipped in-memory fake (and, next, python-quickbooks and an emulator)."""

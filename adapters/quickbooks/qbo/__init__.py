"""The real QuickBooks Online adapter: python-quickbooks and intuit-oauth over HTTP.

`QuickBooksAccountingSystems` implements `core.ports.AccountingSystems`. Modules:
`transport` (the python-quickbooks client: base URL, timeout, raw status classification),
`limiter` (per-company request limits), `tokens` (refresh and rotation), `calls` (retries),
`queries`, `settings` (account mapping), `mapping` (specs → QBO objects), `system` (the port).
"""

from adapters.quickbooks.qbo.calls import RetryPolicy
from adapters.quickbooks.qbo.limiter import InProcessRequestLimiter, RateLimits, RequestLimiter
from adapters.quickbooks.qbo.system import QuickBooksAccountingSystem
from adapters.quickbooks.qbo.systems import QuickBooksAccountingSystems

__all__ = [
    "InProcessRequestLimiter",
    "QuickBooksAccountingSystem",
    "QuickBooksAccountingSystems",
    "RateLimits",
    "RequestLimiter",
    "RetryPolicy",
]

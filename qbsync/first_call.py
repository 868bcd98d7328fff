"""A first call to a running qbsync, through the generated Python stubs.

    python -m qbsync.first_call --target 127.0.0.1:50051 --key qbs_...

Syncs a $500 deposit with a $50 refund for a new customer, watches the job until it is done, and prints
the "View in QuickBooks" link of the payment.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.money_pb2 import Money

from qbsync.v1 import resources_pb2 as r
from qbsync.v1 import sync_service_pb2 as s
from qbsync.v1 import sync_service_pb2_grpc as g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--key", required=True, help="an API key from `qbsync keys create` or `make run`")
    parser.add_argument("--tls-ca", help="TLS: the CA certificate (PEM) the server's certificate chains to")
    parser.add_argument("--tls-cert", help="mTLS: this client's certificate (PEM)")
    parser.add_argument("--tls-key", help="mTLS: this client's private key (PEM)")
    args = parser.parse_args()

    now = Timestamp()
    now.GetCurrentTime()
    suffix = uuid.uuid4().hex[:6]
    request = s.SyncPaymentRequest(
        opportunity=r.Opportunity(
            opportunity_id=f"opp-{suffix}",
            number="1001",
            customer=r.Customer(
                customer_id=f"cust-{suffix}", first_name="Mary", last_name="O'Brien", email="mary@example.com"
            ),
        ),
        payment=r.Payment(
            payment_id=f"pay-{suffix}",
            amount=Money(currency_code="USD", units=500),
            method=r.PAYMENT_METHOD_CREDIT_CARD,
            received_time=now,
            reference="deposit",
            refunds=[
                r.Refund(refund_id=f"ref-{suffix}", amount=Money(currency_code="USD", units=50), refunded_time=now)
            ],
        ),
        request_id=f"first-call-{suffix}",
    )
    metadata = [("authorization", f"Bearer {args.key}")]
    with _channel(args) as channel:
        stub = g.SyncServiceStub(channel)
        job = stub.SyncPayment(request, metadata=metadata, timeout=10)
        print(f"accepted {job.name}: {r.SyncJob.State.Name(job.state)}")
        for update in stub.WatchSyncJob(s.GetSyncJobRequest(name=job.name), metadata=metadata, timeout=60):
            print(f"  {r.SyncJob.State.Name(update.state)} (attempts {update.attempts})")
            job = update
        for result in job.results:
            print(
                f"  {r.EntityType.Name(result.entity.type)} {result.entity.id} -> QuickBooks id "
                f"{result.quickbooks_id} ({r.SyncAction.Name(result.action)})"
            )
        link = stub.GetQuickBooksLink(
            s.GetQuickBooksLinkRequest(entity=r.EntityRef(type=r.ENTITY_TYPE_PAYMENT, id=request.payment.payment_id)),
            metadata=metadata,
            timeout=10,
        )
        print(f"View in QuickBooks: {link.url}")


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext unless a TLS option is given (`make run` serves plaintext on loopback)."""
    if not (args.tls_ca or args.tls_cert):
        return grpc.insecure_channel(args.target)

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    credentials = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
    return grpc.secure_channel(args.target, credentials)


if __name__ == "__main__":
    main()

"""How payments are applied to invoices (R3, R5): a pure function, so it is easy to check.

Payments are applied oldest first to invoices oldest first. An application once written stays as it is
unless it has to shrink (a refund or a smaller payment, a smaller invoice); what a payment has left
then goes to the oldest invoice with an open balance. Never more than a payment holds after its
refunds, never more than an invoice's total.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.money import ZERO, money_sum

Applications = dict[str, dict[str, Decimal]]  # payment_id -> job_id -> amount applied


@dataclass(frozen=True)
class PaymentFunds:
    payment_id: str
    net_amount: Decimal  # the payment less its refunds


@dataclass(frozen=True)
class InvoiceDue:
    job_id: str
    total: Decimal


def plan_applications(
    payments: list[PaymentFunds],
    invoices: list[InvoiceDue],
    current: Applications,
    movable: set[str],
) -> Applications:
    """The applications to write. `payments` and `invoices` come oldest first; only the payments in
    `movable` (those about to be written) may change, the others keep what they have."""
    invoice_ids = [i.job_id for i in invoices]
    totals = {i.job_id: i.total for i in invoices}
    plan: Applications = {
        p.payment_id: {
            job: amount
            for job, amount in current.get(p.payment_id, {}).items()
            if amount > ZERO and (job in totals or p.payment_id not in movable)
        }
        for p in payments
    }
    movers = [p for p in payments if p.payment_id in movable]

    # A payment never applies more than it holds: trim its newest applications first.
    for p in movers:
        room = max(p.net_amount, ZERO)
        for job in invoice_ids:
            applied = plan[p.payment_id].get(job, ZERO)
            plan[p.payment_id][job] = min(applied, room)
            room -= plan[p.payment_id][job]

    # An invoice never receives more than its total: trim the newest payments first.
    for job in invoice_ids:
        excess = _applied_to(plan, job) - totals[job]
        for p in reversed(movers):
            if excess <= ZERO:
                break
            cut = min(excess, plan[p.payment_id].get(job, ZERO))
            plan[p.payment_id][job] = plan[p.payment_id].get(job, ZERO) - cut
            excess -= cut

    # What is left goes to the oldest invoice with an open balance, oldest payment first.
    for job in invoice_ids:
        for p in movers:
            open_balance = totals[job] - _applied_to(plan, job)
            left = p.net_amount - money_sum(plan[p.payment_id].values())
            if open_balance <= ZERO:
                break
            if left > ZERO:
                plan[p.payment_id][job] = plan[p.payment_id].get(job, ZERO) + min(open_balance, left)

    return {pid: {job: amt for job, amt in apps.items() if amt > ZERO} for pid, apps in plan.items()}


def _applied_to(plan: Applications, job_id: str) -> Decimal:
    return money_sum(apps.get(job_id, ZERO) for apps in plan.values())


def shrink_only(current: dict[str, Decimal], target: dict[str, Decimal]) -> dict[str, Decimal]:
    """The applications of `current` lowered to `target` where it is lower: written first, so that no
    invoice is ever over-applied while the writes of one sync are under way."""
    lowered = {job: min(amount, target.get(job, ZERO)) for job, amount in current.items()}
    return {job: amount for job, amount in lowered.items() if amount > ZERO}

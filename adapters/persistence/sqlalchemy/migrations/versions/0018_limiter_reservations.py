"""A company's next free moment reserved in the admission's one round trip (PostgreSQL, issue 12).

0012's `qbsync_admit` answers a full company with how long to wait, and the caller asks again after that
wait: a second round trip for every request that found a window full, which is every request of a company
at QBO's ceiling. When the wait is a known time — the moment the window's oldest answered request leaves
it — this function, given `p_reserve`, admits the request at once for that moment: its slot and start are
stored as an admitted request's (in flight, so every later admission counts it in every window), and the
caller sleeps `wait_seconds` before sending. Sending at that moment keeps the windows: the wait was computed
with every request admitted before, and every one admitted after counts this one; sending later only ever
finds more room. When no time can be known (the in-flight cap, or a window full of requests still in flight)
it answers as 0012's does: NULL and a poll interval.

`qbsync_admit_batch` admits a batch request into the company's batch window and, once there, into the
company's own windows, in one statement: a batch cost two admissions, two round trips. When the batch window
admits it and the company's does not yet, the batch slot is kept and the caller asks for the company's alone.

A new overload (14 arguments): 0012's 13-argument function is left as it was, for processes of the previous
release still running during an upgrade. Nothing on SQLite: its limiter is in-process.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0012's body, with `v_known` (whether wait_seconds is a known moment rather than a poll) and the reservation:
# the slot's lease and the start's future date run from the moment the request may be sent.
ADMIT = """
CREATE OR REPLACE FUNCTION qbsync_admit(
    p_realm text, p_slot text, p_holder text,
    p_per_second integer, p_per_minute integer, p_in_flight integer,
    p_second double precision, p_minute double precision, p_lease double precision, p_poll double precision,
    p_slots text[], p_starts bigint[], p_answered_ago double precision[], p_reserve boolean,
    OUT admitted_start bigint, OUT wait_seconds double precision
) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz;
    v_nth timestamptz;
    v_taken bigint;
    v_window double precision;
    v_allowed integer;
    v_known boolean := true;
    v_lease_from timestamptz;
BEGIN
    PERFORM qbsync_release(p_slots, p_starts, p_answered_ago);
    PERFORM pg_advisory_xact_lock(hashtext('qbsync-limit:' || p_realm));
    -- clock_timestamp(), not now(): now() is when the statement began, before the lock wait.
    v_now := clock_timestamp();
    -- SKIP LOCKED: a slot some other process is giving back at this moment is going anyway; waiting for
    -- its row while that process waits for this company's lock would be a deadlock.
    DELETE FROM qbo_request_slots WHERE slot_id IN (
        SELECT slot_id FROM qbo_request_slots
         WHERE realm_id = p_realm AND expires <= v_now FOR UPDATE SKIP LOCKED);
    DELETE FROM qbo_request_starts
     WHERE realm_id = p_realm AND started <= v_now - make_interval(secs => p_minute);
    wait_seconds := 0;
    SELECT count(*) INTO v_taken FROM qbo_request_slots WHERE realm_id = p_realm;
    IF v_taken >= p_in_flight THEN
        -- No time can be computed: a request ends when QuickBooks answers.
        wait_seconds := p_poll;
        v_known := false;
    END IF;
    FOR v_window, v_allowed IN VALUES (p_minute, p_per_minute), (p_second, p_per_second) LOOP
        -- The allowed-th newest start: while it is inside the window, the window is full.
        SELECT started INTO v_nth FROM qbo_request_starts
         WHERE realm_id = p_realm ORDER BY started DESC OFFSET v_allowed - 1 LIMIT 1;
        IF v_nth IS NULL THEN
            CONTINUE;
        ELSIF v_nth > v_now THEN
            -- Still in flight (or reserved): it leaves the window a window's length after its answer.
            wait_seconds := greatest(wait_seconds, p_poll);
            v_known := false;
        ELSIF extract(epoch FROM v_now - v_nth) < v_window THEN
            wait_seconds := greatest(wait_seconds, v_window - extract(epoch FROM v_now - v_nth)::double precision);
        END IF;
    END LOOP;
    IF wait_seconds > 0 AND NOT (p_reserve AND v_known) THEN
        admitted_start := NULL;
        RETURN;
    END IF;
    v_lease_from := v_now + make_interval(secs => wait_seconds);
    INSERT INTO qbo_request_slots (slot_id, realm_id, holder, expires)
    VALUES (p_slot, p_realm, p_holder, v_lease_from + make_interval(secs => p_lease));
    INSERT INTO qbo_request_starts (realm_id, started)
    VALUES (p_realm, v_lease_from + make_interval(secs => p_lease))
    RETURNING id INTO admitted_start;
END
$$
"""

ADMIT_BATCH = """
CREATE OR REPLACE FUNCTION qbsync_admit_batch(
    p_batch_key text, p_batch_slot text, p_realm text, p_slot text, p_holder text,
    p_batch_per_second integer, p_batch_per_minute integer,
    p_per_second integer, p_per_minute integer, p_in_flight integer,
    p_second double precision, p_minute double precision, p_lease double precision, p_poll double precision,
    p_slots text[], p_starts bigint[], p_answered_ago double precision[],
    OUT batch_start bigint, OUT batch_wait double precision,
    OUT admitted_start bigint, OUT wait_seconds double precision
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.admitted_start, a.wait_seconds INTO batch_start, batch_wait
      FROM qbsync_admit(p_batch_key, p_batch_slot, p_holder, p_batch_per_second, p_batch_per_minute, p_in_flight,
                        p_second, p_minute, p_lease, p_poll, p_slots, p_starts, p_answered_ago, true) AS a;
    IF batch_start IS NULL THEN
        RETURN;  -- no room in the batch window: the company's is not asked
    END IF;
    SELECT a.admitted_start, a.wait_seconds INTO admitted_start, wait_seconds
      FROM qbsync_admit(p_realm, p_slot, p_holder, p_per_second, p_per_minute, p_in_flight,
                        p_second, p_minute, p_lease, p_poll, '{}', '{}', '{}', true) AS a;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(ADMIT)
    op.execute(ADMIT_BATCH)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION IF EXISTS qbsync_admit_batch(text, text, text, text, text, integer, integer, integer, "
        "integer, integer, double precision, double precision, double precision, double precision, text[], "
        "bigint[], double precision[])"
    )
    op.execute(
        "DROP FUNCTION IF EXISTS qbsync_admit(text, text, text, integer, integer, integer, double precision, "
        "double precision, double precision, double precision, text[], bigint[], double precision[], boolean)"
    )

"""The shared QuickBooks request limiter in one round trip (issue 12): on PostgreSQL, `qbsync_admit` does in
one statement what `PostgresRequestLimiter` did in an admission transaction of nine statements and a
release transaction of two, and `qbsync_release` gives back answered requests when no admission comes to
carry them (adapters.persistence.sqlalchemy.limiter explains the accounting).

No table changes: the functions keep `qbo_request_slots` and `qbo_request_starts` as they were. Nothing on
SQLite: one process serves a SQLite database, and its limiter is in-process.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Answered requests: their slots are deleted and their starts re-dated from the future (where admission put
# them, inside every window) back to the answer, `answered_ago` seconds before the database's clock now.
# No advisory lock: giving back one's own slots only ever makes room.
RELEASE = """
CREATE OR REPLACE FUNCTION qbsync_release(
    p_slots text[], p_starts bigint[], p_answered_ago double precision[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_slots) > 0 THEN
        DELETE FROM qbo_request_slots WHERE slot_id = ANY (p_slots);
    END IF;
    IF cardinality(p_starts) > 0 THEN
        UPDATE qbo_request_starts AS s
           SET started = clock_timestamp() - make_interval(secs => r.ago)
          FROM unnest(p_starts, p_answered_ago) AS r (id, ago)
         WHERE s.id = r.id;
    END IF;
END
$$
"""

# One admission attempt: the releases carried first (so that they make room for this very admission), then,
# under the company's advisory lock, expiry, the in-flight cap, the two windows and, when there is room, the
# slot. Returns the admitted start's id and 0, or NULL and how many seconds are worth waiting.
ADMIT = """
CREATE OR REPLACE FUNCTION qbsync_admit(
    p_realm text, p_slot text, p_holder text,
    p_per_second integer, p_per_minute integer, p_in_flight integer,
    p_second double precision, p_minute double precision, p_lease double precision, p_poll double precision,
    p_slots text[], p_starts bigint[], p_answered_ago double precision[],
    OUT admitted_start bigint, OUT wait_seconds double precision
) LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz;
    v_nth timestamptz;
    v_taken bigint;
    v_window double precision;
    v_allowed integer;
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
    END IF;
    FOR v_window, v_allowed IN VALUES (p_minute, p_per_minute), (p_second, p_per_second) LOOP
        -- The allowed-th newest start: while it is inside the window, the window is full.
        SELECT started INTO v_nth FROM qbo_request_starts
         WHERE realm_id = p_realm ORDER BY started DESC OFFSET v_allowed - 1 LIMIT 1;
        IF v_nth IS NULL THEN
            CONTINUE;
        ELSIF v_nth > v_now THEN
            -- Still in flight: it leaves the window a window's length after its answer, not yet known.
            wait_seconds := greatest(wait_seconds, p_poll);
        ELSIF extract(epoch FROM v_now - v_nth) < v_window THEN
            wait_seconds := greatest(wait_seconds, v_window - extract(epoch FROM v_now - v_nth)::double precision);
        END IF;
    END LOOP;
    IF wait_seconds > 0 THEN
        admitted_start := NULL;
        RETURN;
    END IF;
    INSERT INTO qbo_request_slots (slot_id, realm_id, holder, expires)
    VALUES (p_slot, p_realm, p_holder, v_now + make_interval(secs => p_lease));
    INSERT INTO qbo_request_starts (realm_id, started)
    VALUES (p_realm, v_now + make_interval(secs => p_lease))
    RETURNING id INTO admitted_start;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(RELEASE)
    op.execute(ADMIT)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION IF EXISTS qbsync_admit(text, text, text, integer, integer, integer, double precision, "
        "double precision, double precision, double precision, text[], bigint[], double precision[])"
    )
    op.execute("DROP FUNCTION IF EXISTS qbsync_release(text[], bigint[], double precision[])")

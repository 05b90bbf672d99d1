"""the lease as one PostgreSQL function: s4al_lease (service/queue_pg.py); nothing on SQLite

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:10:00

"""
from typing import Sequence, Union

from alembic import op

# The function as this revision made it (migration 0006 replaces it), frozen here.
LEASE_FUNCTION_0004 = """
CREATE OR REPLACE FUNCTION s4al_lease(p_project integer, p_token integer, p_holding text[],
                                      p_now timestamptz, p_expires timestamptz, p_lease text,
                                      p_max integer)
RETURNS TABLE (outcome text, held integer, id integer, project_id integer, image_id integer,
               cycle_id integer, kind text, x integer, y integer, w integer, h integer,
               superpixel_id integer, score double precision, status text, model_version text,
               prelabel_path text, lease_id text, lease_expires_at timestamptz,
               image_stem text, image_width integer, image_height integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    live record;
    n_held integer := 0;
    chosen integer;
    result text;
BEGIN
    -- Lease bookkeeping is not durable (see queue.write_tx); one annotator's calls run one at a time.
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(21313, p_token);  -- (0x5341 "SA", token): this token's calls
    -- The project's expired leases go back to the queue; the token's live ones, oldest first.
    FOR live IN
        SELECT reg.id AS rid, reg.lease_id AS lid, reg.lease_expires_at AS expires
        FROM region reg JOIN lease l ON l.id = reg.lease_id
        WHERE reg.project_id = p_project AND reg.status = 'leased'
          AND (reg.lease_expires_at <= p_now OR reg.lease_token_id = p_token)
        ORDER BY l.created_at, reg.id
        FOR UPDATE OF reg SKIP LOCKED
    LOOP
        IF live.expires <= p_now THEN
            UPDATE lease SET state = 'expired', ended_at = p_now
            WHERE lease.id = live.lid AND state = 'active';
            UPDATE region SET status = 'queued', lease_id = NULL, lease_token_id = NULL,
                              lease_expires_at = NULL
            WHERE region.id = live.rid;
        ELSE
            n_held := n_held + 1;
            IF chosen IS NULL AND NOT (live.lid = ANY (p_holding)) THEN
                chosen := live.rid;
                result := 'held';
            END IF;
        END IF;
    END LOOP;
    IF chosen IS NULL AND n_held >= p_max THEN
        result := 'conflict';
    ELSIF chosen IS NULL THEN
        -- The claim: as queue._claim_update (uncorrelated candidate scan, hashed skip exclusion).
        UPDATE region SET status = 'leased', lease_id = p_lease, lease_token_id = p_token,
                          lease_expires_at = p_expires
        WHERE region.id = (SELECT cand.id FROM region cand
                           WHERE cand.project_id = p_project AND cand.status = 'queued'
                             AND cand.id NOT IN (SELECT s.region_id FROM lease s
                                                 WHERE s.token_id = p_token AND s.state = 'skipped')
                           ORDER BY cand.score DESC, cand.id DESC LIMIT 1
                           FOR UPDATE SKIP LOCKED)
          AND region.status = 'queued'
        RETURNING region.id INTO chosen;
        IF chosen IS NULL THEN
            result := 'empty';
        ELSE
            INSERT INTO lease (id, region_id, token_id, state, created_at, expires_at)
            VALUES (p_lease, chosen, p_token, 'active', p_now, p_expires);
            result := 'claimed';
        END IF;
    END IF;
    RETURN QUERY
        SELECT result, n_held, reg.id, reg.project_id, reg.image_id, reg.cycle_id, reg.kind::text,
               reg.x, reg.y, reg.w, reg.h, reg.superpixel_id, reg.score, reg.status::text,
               reg.model_version::text, reg.prelabel_path::text, reg.lease_id::text,
               reg.lease_expires_at, img.stem::text, img.width, img.height
        FROM (SELECT 1) AS one
        LEFT JOIN region reg ON reg.id = chosen
        LEFT JOIN image img ON img.id = reg.image_id;
END
$$;
"""

DROP_LEASE_FUNCTION_0004 = ("DROP FUNCTION IF EXISTS s4al_lease(integer, integer, text[], timestamptz, "
                       "timestamptz, text, integer)")


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LEASE_FUNCTION_0004)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_LEASE_FUNCTION_0004)

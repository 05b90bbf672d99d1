"""The lease on PostgreSQL: the whole of `queue.lease_next` in one server-side function, one round trip.

A lease used to be six round trips (BEGIN, the per-token advisory lock, the live-lease read, the claim,
COMMIT, and the pool's ping); each one wakes a database backend and a Python thread, which on an idle
machine costs more than the statements themselves. `s4al_lease` does the same steps in the same order
inside the database, in autocommit (the statement is its own transaction), so the lease is the pool's
ping plus one call. SQLite keeps the Python version in service/queue.py; the queue tests run both.

The function is created by migration 0006 (0004 made its first version, without pages) and, for
databases made from the models (the tests), by `metadata.create_all` (service/models.py hooks it
there); this module imports no models. A change to it needs a new migration that runs
`CREATE_LEASE_FUNCTION` again.

A lease belongs to a token *and a page instance* (`p_page`, a browser tab's id; NULL is one instance
too): a page gets back its own live leases, never another tab's.
"""

from datetime import datetime

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import String

# OUT columns are named as the Region's attributes (plus the image's); `use_column` makes table columns
# win where a statement inside could also mean an OUT parameter.
CREATE_LEASE_FUNCTION = """
CREATE OR REPLACE FUNCTION s4al_lease(p_project integer, p_token integer, p_holding text[],
                                      p_now timestamptz, p_expires timestamptz, p_lease text,
                                      p_max integer, p_page text)
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
          AND (reg.lease_expires_at <= p_now
               OR (reg.lease_token_id = p_token AND l.page IS NOT DISTINCT FROM p_page))
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
                                                 WHERE s.token_id = p_token
                                                   AND s.state IN ('skipped', 'rejected', 'consensus'))
                           ORDER BY cand.score DESC, cand.id DESC LIMIT 1
                           FOR UPDATE SKIP LOCKED)
          AND region.status = 'queued'
        RETURNING region.id INTO chosen;
        IF chosen IS NULL THEN
            result := 'empty';
        ELSE
            INSERT INTO lease (id, region_id, token_id, state, created_at, expires_at, page)
            VALUES (p_lease, chosen, p_token, 'active', p_now, p_expires, p_page);
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

DROP_LEASE_FUNCTION = ("DROP FUNCTION IF EXISTS s4al_lease(integer, integer, text[], timestamptz, "
                       "timestamptz, text, integer, text)")

_CALL = text("SELECT * FROM s4al_lease(:p_project, :p_token, :p_holding, :p_now, :p_expires, :p_lease, "
             ":p_max, :p_page)").bindparams(bindparam("p_holding", type_=ARRAY(String())))


def call_lease(conn: Connection, project_id: int, token_id: int, holding: list[str], now: datetime,
               expires: datetime, lease_id: str, max_live: int, page: str | None):
    """One call of s4al_lease on an autocommit connection; its one row (outcome, held, region…)."""
    return conn.execute(_CALL, {"p_project": project_id, "p_token": token_id, "p_holding": holding,
                                "p_now": now, "p_expires": expires, "p_lease": lease_id,
                                "p_max": max_live, "p_page": page}).one()

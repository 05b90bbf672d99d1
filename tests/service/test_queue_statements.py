"""The queue's hot-path statements stay correct when many request threads use them first at once.

SQLAlchemy memoises parts of a shared `aliased()` entity lazily, and that memoising is not safe from two
threads at once: when these statements were built on first use, two concurrent first leases could build
(and cache for the life of the process) a claim whose candidate scan was a cartesian product of `region`
with itself, a query that never finishes on a real queue. The check runs in a fresh interpreter (a
module imported once, as in a uvicorn worker) with a tiny GIL switch interval, so threads interleave
inside SQLAlchemy's code as often as they can. The race is rare: against the old lazy build this check
failed in about 1 fresh interpreter of 10, hence several runs; it guards, it cannot prove.
"""

import subprocess
import sys
import textwrap

from sqlalchemy.dialects import postgresql, sqlite

from service import queue

_FIRST_USE_FROM_THREADS = textwrap.dedent("""
    import sys, threading
    sys.setswitchinterval(1e-6)
    from sqlalchemy.dialects import postgresql, sqlite
    from service import queue

    statements = [(queue._STATEMENTS.claim, sqlite.dialect()),
                  (queue._STATEMENTS.claim, postgresql.dialect()),
                  (queue._STATEMENTS.live_leases, postgresql.dialect()),
                  (queue._STATEMENTS.lock_lease[1], postgresql.dialect()),
                  (queue._STATEMENTS.lease_context[1], postgresql.dialect())]
    start = threading.Barrier(16)
    seen = [set() for _ in statements]

    def first_use():
        start.wait()
        for i, (stmt, dialect) in enumerate(statements):
            seen[i].add(str(stmt.compile(dialect=dialect)))

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for s in seen:
        assert len(s) == 1, f"threads compiled {len(s)} different statements"
    print(seen[0].pop().replace("\\n", " "))
""")


def _claim_scan(sql: str) -> str:
    """The claim's candidate scan: from the inner SELECT to its ORDER BY."""
    start = sql.index("SELECT cand.id")
    return sql[start:sql.index("ORDER BY", start)]


def test_claim_scans_only_the_candidate_alias():
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        scan = " ".join(str(queue._STATEMENTS.claim.compile(dialect=dialect)).split())
        scan = _claim_scan(scan)
        assert "FROM region AS cand WHERE cand.project_id" in scan
        assert "cand.status" in scan and "region.status" not in scan


def test_first_use_from_many_threads_at_once_gives_one_correct_statement():
    for _ in range(8):  # each run is a fresh interpreter: a fresh first use
        out = subprocess.run([sys.executable, "-c", _FIRST_USE_FROM_THREADS], capture_output=True, text=True,
                             timeout=120, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "SAWarning" not in out.stderr, out.stderr[-3000:]
        scan = _claim_scan(" ".join(out.stdout.split()))
        assert "FROM region AS cand WHERE cand.project_id" in scan, scan

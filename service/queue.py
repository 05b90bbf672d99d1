"""The region queue: atomic claims, the lease lifecycle, and the lazy return of expired leases.

A lease is *live* while its row is `active` and `now < expires_at`; the live lease of a region is
mirrored on the Region row (`status='leased'`, `lease_id`, `lease_token_id`, `lease_expires_at`), which
is what the claim statement reads. Rules:

- Claiming is one statement on both backends: `UPDATE region SET ... WHERE id = (SELECT id ... ORDER BY
  score DESC, id DESC LIMIT 1 FOR UPDATE SKIP LOCKED) AND status = 'queued' RETURNING ...` (ties go to
  the newest region; the order is exactly ix_region_queue read backwards). On PostgreSQL the
  row lock with SKIP LOCKED makes concurrent claimers take different rows without waiting; SQLite has no
  row locks, so the claim runs in a `BEGIN IMMEDIATE` transaction (one writer at a time) and the outer
  `status = 'queued'` is the compare-and-set.
- A lease belongs to a token and a page instance (`page`: a browser tab's id; None is one instance too),
  so two tabs of one annotator never get the same region. A page holds at most MAX_LIVE_LEASES live
  leases per project: the region on screen and the prefetched next one. A plain lease call returns the
  page's oldest live lease if there is one (a reloaded page gets its region back); `holding=[ids]` asks
  for a live lease other than those, claiming
  a new region if needed. On PostgreSQL a transaction-scoped advisory lock per token serialises one
  annotator's own concurrent calls (different annotators never wait on each other); on SQLite the
  IMMEDIATE transaction already does.
- Expired leases go back to the queue lazily: every claim first returns the project's expired leases
  (`FOR UPDATE SKIP LOCKED`, so concurrent sweepers neither block nor deadlock). Their Lease rows become
  `expired`.
- A skip ends the lease and excludes that region for that token (a `skipped` Lease row; a `rejected` one,
  whose annotation a reviewer rejected, and a `consensus` one, a vote on a region that wants k
  annotators, exclude it too). Once
  `settings.skips_to_retire` distinct annotators skipped a region it leaves the queue for everyone
  (`status='skipped'`); 0 never retires a region. The claim's exclusion is an uncorrelated
  `id NOT IN (this token's skipped region ids)`, served by the partial index ix_lease_skipped.
- Time comes from a `now` argument so tests control the clock; the routes read `app.state.clock`.

On PostgreSQL `lease_next` runs as one server-side function, `s4al_lease` (service/queue_pg.py), that
takes exactly these steps in this order, in one round trip; SQLite runs the Python version here. The
queue tests run on both.
"""

import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    func,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, aliased

from service.models import (
    EXCLUDING_STATES,
    Annotation,
    Image,
    Lease,
    Project,
    Region,
    Token,
    UTCDateTime,
    utcnow,
)
from service.queue_pg import call_lease
from service.schemas.token import TokenPublic

MAX_LIVE_LEASES = 2  # the region on screen + the prefetched next one
_CANDIDATE = aliased(Region, name="cand")  # the claim's inner scan, never correlated to the UPDATE's row


class QueueError(Exception):
    """A lease operation that cannot be done. `status` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class LeaseNotFound(QueueError):
    status = 404


class LeaseForbidden(QueueError):
    status = 403


class LeaseConflict(QueueError):
    status = 409


def request_now(request) -> datetime:
    """The current time for a request: `app.state.clock()` when a test set one, else the wall clock."""
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else utcnow()


_sqlite_locks: dict[str, threading.Lock] = {}
_sqlite_locks_guard = threading.Lock()


def _sqlite_lock(url: str) -> threading.Lock:
    with _sqlite_locks_guard:
        return _sqlite_locks.setdefault(url, threading.Lock())


@contextmanager
def write_tx(session: Session, durable: bool = True) -> Iterator[None]:
    """A write transaction: commit at the end of the block, roll back on any exception.

    The sessions use expire_on_commit=False, so rows that decide anything are re-read inside the
    transaction with populate_existing. SQLite: whatever the session did before is committed, then
    `BEGIN IMMEDIATE` takes the database's write lock up front, so the reads inside cannot go stale
    before the write; writers of this process queue on a Python lock first, since SQLite's own busy
    handler polls with sleeps of up to 100 ms. PostgreSQL: the request's read transaction simply goes on
    (READ COMMITTED: every statement sees the latest commits; row locks do the rest), which saves a
    COMMIT and a BEGIN round trip.

    `durable=False` (lease bookkeeping, never annotations) commits without waiting for the log flush
    (PostgreSQL `synchronous_commit=off`, SQLite `synchronous=NORMAL`): still atomic, isolated and
    immediately visible, and safe against a crash of the process; only a crash of the database server
    or machine can forget the last fraction of a second of leases, which then are simply not leased.
    """
    engine = session.get_bind()
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        session.commit()
    local = _sqlite_lock(str(engine.url)) if sqlite else nullcontext()
    with local:
        conn = session.connection()
        restore = None
        try:
            if sqlite:
                if not durable:
                    restore = conn.exec_driver_sql("PRAGMA synchronous").scalar()
                    conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif engine.dialect.name == "postgresql" and not durable:
                conn.execute(text("SELECT set_config('synchronous_commit', 'off', true)"))
            yield
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            if restore is not None:
                session.connection().exec_driver_sql(f"PRAGMA synchronous={int(restore)}")
                session.commit()


def is_live(lease: Lease, now: datetime) -> bool:
    return lease.state == "active" and now < lease.expires_at


def _requeue(session: Session, expired: list[tuple[int, str | None]], now: datetime) -> None:
    """Mark these (region id, lease id) pairs' leases expired and their regions queued."""
    if not expired:
        return
    opts = {"synchronize_session": False}
    lease_ids = [lid for _, lid in expired if lid]
    if lease_ids:
        session.execute(update(Lease).where(Lease.id.in_(lease_ids), Lease.state == "active")
                        .values(state="expired", ended_at=now), execution_options=opts)
    session.execute(update(Region).where(Region.id.in_([rid for rid, _ in expired]))
                    .values(status="queued", lease_id=None, lease_token_id=None, lease_expires_at=None),
                    execution_options=opts)


def release_token_leases(session: Session, token_id: int, now: datetime | None = None) -> int:
    """End every live lease of a token (revoked) and put its regions back in the queue; committed."""
    now = now or utcnow()
    with write_tx(session, durable=False):
        rows = session.execute(select(Region.id, Region.lease_id).where(
            Region.status == "leased", Region.lease_token_id == token_id).with_for_update()).all()
        if rows:
            opts = {"synchronize_session": False}
            session.execute(update(Lease).where(Lease.id.in_([lid for _, lid in rows if lid]),
                                                Lease.state == "active")
                            .values(state="released", ended_at=now), execution_options=opts)
            session.execute(update(Region).where(Region.id.in_([rid for rid, _ in rows]))
                            .values(status="queued", lease_id=None, lease_token_id=None,
                                    lease_expires_at=None), execution_options=opts)
    return len(rows)


def _live_leases_statement():
    """Leased regions of a project that are expired or held by the token, with their leases' start."""
    return (select(Region, Lease.created_at).join(Lease, Lease.id == Region.lease_id)
            .where(Region.project_id == bindparam("p_project"), Region.status == "leased",
                   or_(Region.lease_expires_at <= bindparam("p_now"),
                       and_(Region.lease_token_id == bindparam("p_token"),
                            Lease.page.is_not_distinct_from(bindparam("p_page", type_=String())))))
            .execution_options(populate_existing=True))


def _live_leases(session: Session, project_id: int, token_id: int, page: str | None,
                 now: datetime) -> list[Region]:
    """Return the project's expired leases to the queue; the page's live leases, oldest first.

    One read serves both: leased regions of the project that are expired or held by this page. SQLite
    only (its IMMEDIATE transaction is the lock); on PostgreSQL s4al_lease does this with SKIP LOCKED.
    """
    rows = session.execute(_STATEMENTS.live_leases,
                           {"p_project": project_id, "p_now": now, "p_token": token_id, "p_page": page}).all()
    _requeue(session, [(r.id, r.lease_id) for r, _ in rows if r.lease_expires_at <= now], now)
    live = sorted(((created, r.id, r) for r, created in rows if r.lease_expires_at > now),
                  key=lambda t: t[:2])
    return [r for _, _, r in live]


def _claim_update():
    """UPDATE of the project's best queued region that the token did not skip, row-locked.

    The candidate scan is uncorrelated, so it runs once per claim; the skip exclusion is a hashed
    subplan, not a per-row lookup.
    """
    cand = _CANDIDATE
    skipped_by_me = select(Lease.region_id).where(Lease.token_id == bindparam("p_token"),
                                                  text(EXCLUDING_STATES))
    best = (select(cand.id)
            .where(cand.project_id == bindparam("p_project"), cand.status == "queued",
                   cand.id.not_in(skipped_by_me))
            .order_by(cand.score.desc(), cand.id.desc())  # = one backward scan of ix_region_queue
            .limit(1)
            .with_for_update(skip_locked=True)
            .correlate(None)
            .scalar_subquery())
    return (update(Region).where(Region.id == best, Region.status == "queued")
            .values(status="leased", lease_id=bindparam("p_lease", type_=String()),
                    lease_token_id=bindparam("p_token", type_=Integer()),
                    lease_expires_at=bindparam("p_expires", type_=UTCDateTime())))


def _claim(session: Session, project_id: int, token_id: int, page: str | None, lease_id: str, now: datetime,
           expires: datetime) -> tuple[Region, Image] | None:
    """SQLite: claim the best region and record its Lease row; the region with its image."""
    params = {"p_project": project_id, "p_token": token_id, "p_lease": lease_id, "p_expires": expires}
    opts = {"synchronize_session": False, "populate_existing": True}
    region = session.execute(_STATEMENTS.claim, params, execution_options=opts).scalars().first()
    if region is None:
        return None
    session.add(Lease(id=lease_id, region_id=region.id, token_id=token_id, state="active",
                      created_at=now, expires_at=expires, page=page))
    return region, session.get(Image, region.image_id)


@dataclass(frozen=True)
class ImageRef:
    id: int
    stem: str
    width: int
    height: int


@dataclass(frozen=True)
class LeasedRegion:
    """A region as leased: its fields (as Region's), the lease on it, and its image's size."""

    id: int
    project_id: int
    image_id: int
    cycle_id: int | None
    kind: str
    x: int
    y: int
    w: int
    h: int
    superpixel_id: int
    score: float
    status: str
    model_version: str | None
    prelabel_path: str | None
    lease_id: str
    lease_expires_at: datetime
    image: ImageRef

    @classmethod
    def of(cls, region: Region, image: Image) -> "LeasedRegion":
        fields = {f: getattr(region, f) for f in _REGION_FIELDS}
        return cls(**fields, image=ImageRef(image.id, image.stem, image.width, image.height))


_REGION_FIELDS = [f for f in LeasedRegion.__dataclass_fields__ if f != "image"]


def lease_next(session: Session, settings, project_id: int, token: Token | TokenPublic, *,
               holding: Iterable[str] = (), page: str | None = None,
               now: datetime | None = None) -> LeasedRegion | None:
    """Lease the best queued region of a project to `token` on `page` (see the module docstring); commits.

    Returns the leased region, or None when nothing is left. Raises LeaseConflict when the page
    already holds MAX_LIVE_LEASES other live leases. PostgreSQL runs it as one server-side function
    (service/queue_pg.py), SQLite as the Python below; both follow the same steps. (A gold lease,
    service/gold.claim_gold, is tried by the route before this, when the project's gold_rate draws one.)
    """
    now = now or utcnow()
    lease_id = secrets.token_urlsafe(18)
    expires = now + timedelta(seconds=settings.lease_ttl_seconds)
    if session.get_bind().dialect.name == "postgresql":
        return _lease_postgresql(session, project_id, token.id, page, sorted(set(holding)), now, expires,
                                 lease_id)
    holding = set(holding)
    with write_tx(session, durable=False):  # IMMEDIATE: one writer, so one call of a token at a time
        held = _live_leases(session, project_id, token.id, page, now)
        for region in held:
            if region.lease_id not in holding:
                return LeasedRegion.of(region, session.get(Image, region.image_id))
        if len(held) >= MAX_LIVE_LEASES:
            raise _too_many(len(held))
        claimed = _claim(session, project_id, token.id, page, lease_id, now, expires)
        return LeasedRegion.of(*claimed) if claimed is not None else None


def _too_many(held: int) -> LeaseConflict:
    return LeaseConflict(f"this page already holds {held} leases on this project; submit, skip or release "
                         "one first")


def _lease_postgresql(session: Session, project_id: int, token_id: int, page: str | None, holding: list[str],
                      now: datetime, expires: datetime, lease_id: str) -> LeasedRegion | None:
    # Its own autocommit connection: the call is its own transaction, whatever the session holds.
    with session.get_bind().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = call_lease(conn, project_id, token_id, holding, now, expires, lease_id, MAX_LIVE_LEASES, page)
    if row.outcome == "conflict":
        raise _too_many(row.held)
    if row.outcome == "empty":
        return None
    fields = {f: getattr(row, f) for f in _REGION_FIELDS}
    fields["lease_expires_at"] = fields["lease_expires_at"].astimezone(UTC)
    return LeasedRegion(**fields, image=ImageRef(row.image_id, row.image_stem, row.image_width,
                                                 row.image_height))


def _check_owner(session: Session, lease: Lease | None, lease_id: str, token: Token | TokenPublic) -> None:
    """The lease exists (404) and is the caller's (403). A token revoked and re-issued under the same
    name hands its leases on: the page that got a new token after a 401 can still save its work."""
    if lease is None:
        raise LeaseNotFound(f"lease {lease_id!r} not found")
    if lease.token_id != token.id:
        holder = session.get(Token, lease.token_id) if lease.token_id is not None else None
        if holder is None or not holder.revoked or holder.name != token.name:
            raise LeaseForbidden("this lease belongs to another annotator")


def _with_replay(q, with_key: bool):
    """Add the annotation this token already stored under the Idempotency-Key (or NULL) to a query."""
    if not with_key:
        return q.add_columns(null())
    return q.add_columns(Annotation).outerjoin(
        Annotation, and_(Annotation.token_id == bindparam("p_token"),
                         Annotation.idempotency_key == bindparam("p_key")))


def _lease_context_statement(with_key: bool):
    q = (select(Lease, Region, Image, Project)
         .join(Region, Region.id == Lease.region_id).join(Image, Image.id == Region.image_id)
         .join(Project, Project.id == Region.project_id).where(Lease.id == bindparam("p_lease")))
    return _with_replay(q, with_key)


def _lock_lease_statement(with_key: bool):
    q = (select(Lease, Region).join(Region, Region.id == Lease.region_id)
         .where(Lease.id == bindparam("p_lease")))
    return (_with_replay(q, with_key).with_for_update(of=[Lease.__table__, Region.__table__])
            .execution_options(populate_existing=True))


def _lease_params(lease_id: str, token_id: int, key: str | None) -> dict:
    return {"p_lease": lease_id, "p_token": token_id, "p_key": key}


@dataclass(frozen=True)
class _HotPathStatements:
    """The queue's hot-path statements, built once at import; the values travel as bound parameters.

    Built once because building them costs more Python time (~3 ms a claim) than running them. Built at
    import, not lazily on first use, because SQLAlchemy's lazily memoised parts of a shared `aliased()`
    entity are not safe to build from two threads at once: two concurrent first leases (two requests in
    the thread pool) once built and cached a claim whose candidate scan had become a cartesian product
    of `region` with itself (tests/service/test_queue_statements.py guards against it).
    """

    live_leases: object  # SQLite's, as claim; PostgreSQL does both inside s4al_lease (service/queue_pg.py)
    claim: object
    lease_context: tuple  # [with Idempotency-Key]
    lock_lease: tuple  # [with Idempotency-Key]


_STATEMENTS = _HotPathStatements(
    live_leases=_live_leases_statement(),
    claim=_claim_update().returning(Region),
    lease_context=(_lease_context_statement(False), _lease_context_statement(True)),
    lock_lease=(_lock_lease_statement(False), _lock_lease_statement(True)),
)


def lease_context(session: Session, lease_id: str, token: Token | TokenPublic, key: str | None = None,
                  ) -> tuple[Lease, Region, Image, Project, Annotation | None]:
    """The caller's lease with its region, image, project and the annotation already stored under
    `key`, in one read (404 / 403)."""
    row = session.execute(_STATEMENTS.lease_context[key is not None],
                          _lease_params(lease_id, token.id, key)).first()
    _check_owner(session, row[0] if row else None, lease_id, token)
    return tuple(row)


def lock_lease(session: Session, lease_id: str, token: Token | TokenPublic, key: str | None = None,
               ) -> tuple[Lease, Region, Annotation | None]:
    """Inside a write_tx: the caller's lease and its region, row-locked and re-read (404 / 403), with
    the annotation already stored under `key` (read after the lock, so a concurrent retry is seen)."""
    row = session.execute(_STATEMENTS.lock_lease[key is not None],
                          _lease_params(lease_id, token.id, key)).first()
    _check_owner(session, row[0] if row else None, lease_id, token)
    return tuple(row)


def _unmirror(region: Region, lease: Lease, status: str) -> None:
    """Clear the region's lease fields if this lease is the one mirrored there."""
    if region.lease_id == lease.id:
        region.status = status
        region.lease_id = None
        region.lease_token_id = None
        region.lease_expires_at = None


def renew(session: Session, settings, lease_id: str, token: Token | TokenPublic,
          now: datetime | None = None) -> Lease:
    now = now or utcnow()
    with write_tx(session, durable=False):
        lease, region, _ = lock_lease(session, lease_id, token)
        if not is_live(lease, now) or (region.lease_id != lease.id and region.status != "gold"):
            raise LeaseConflict(_ended_message(lease, now))
        lease.expires_at = now + timedelta(seconds=settings.lease_ttl_seconds)
        if region.lease_id == lease.id:
            region.lease_expires_at = lease.expires_at
    return lease


def release(session: Session, lease_id: str, token: Token | TokenPublic,
            now: datetime | None = None) -> Lease:
    """Give the region back to the queue unlabeled."""
    now = now or utcnow()
    with write_tx(session, durable=False):
        lease, region, _ = lock_lease(session, lease_id, token)
        if lease.state != "active":
            raise LeaseConflict(_ended_message(lease, now))
        lease.state, lease.ended_at = "released", now
        _unmirror(region, lease, "queued")
    return lease


def skip(session: Session, settings, lease_id: str, token: Token | TokenPublic, reason: str,
         now: datetime | None = None) -> Lease:
    """End the lease; this token never gets the region again; enough skips retire it for everyone."""
    now = now or utcnow()
    with write_tx(session, durable=False):
        lease, region, _ = lock_lease(session, lease_id, token)
        if lease.state not in ("active", "expired"):
            raise LeaseConflict(_ended_message(lease, now))
        lease.state, lease.ended_at, lease.reason = "skipped", now, reason
        session.flush()
        skippers = session.scalar(select(func.count(func.distinct(Lease.token_id)))
                                  .where(Lease.region_id == region.id, Lease.state == "skipped"))
        retire = settings.skips_to_retire > 0 and skippers >= settings.skips_to_retire
        if region.lease_id == lease.id:
            _unmirror(region, lease, "skipped" if retire else "queued")
        elif retire and region.status == "queued":
            region.status = "skipped"
    return lease


def _ended_message(lease: Lease, now: datetime) -> str:
    if lease.state == "active" and now >= lease.expires_at or lease.state == "expired":
        return "the lease expired; lease a new region"
    return f"the lease already ended ({lease.state})"

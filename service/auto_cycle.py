"""The loop runs itself: a project's next cycle starts when enough labels came in since the last cycle,
or when its queue runs low (the project's `auto_cycle` setting, schemas.project.AutoCycleSettings).

The check runs after every submit and skip, and after an oracle batch. With the setting off (the
default) it costs one primary-key read. On, it reads the latest cycle and, when that one is finished,
one statement whose counts stop at their thresholds, so the check does not grow with the project.
Two requests that pass the check at once are settled by create_cycle: exactly one cycle is created,
and the other's CycleConflict is the expected outcome, not an error.

"Since the last cycle" means since the latest cycle started (or was created, if it never started):
labels that came in while it trained were not part of it. A failed or cancelled cycle counts too, so a
cycle that keeps failing is retried after another `after_labeled` labels, not after every submit.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.cycles import ACTIVE, CycleConflict, create_cycle, dispatch_cycle
from service.models import CURRENT, Annotation, Cycle, Project, Region, utcnow
from service.schemas.project import AutoCycleSettings

log = logging.getLogger(__name__)


@dataclass
class AutoCycleState:
    """Where a project stands against its rule: what the check decides on, and what the dashboard shows."""

    rule: AutoCycleSettings
    last_cycle: Cycle | None
    labeled_since: int  # labels submitted since the last cycle started (the check stops at its threshold)
    waiting: int  # regions waiting to be leased (capped likewise)

    @property
    def active(self) -> bool:
        return self.last_cycle is not None and self.last_cycle.status in ACTIVE

    @property
    def reason(self) -> str | None:
        """Why a cycle should start now, or None."""
        if not self.rule.enabled or self.active:
            return None
        if self.rule.after_labeled and self.labeled_since >= self.rule.after_labeled:
            return f"{self.labeled_since} labels since the last cycle (threshold {self.rule.after_labeled})"
        if self.rule.when_queue_below and self.waiting < self.rule.when_queue_below:
            return f"{self.waiting} regions waiting (starts below {self.rule.when_queue_below})"
        return None


def rule_of(stored: dict | None) -> AutoCycleSettings:
    """The rule as stored on the project (None for projects made before the setting existed: off)."""
    return AutoCycleSettings.model_validate(stored or {})


def latest_cycle(session: Session, project_id: int) -> Cycle | None:
    # Only the latest cycle can be active: a new one is never created while another is.
    return session.scalar(select(Cycle).where(Cycle.project_id == project_id)
                          .order_by(Cycle.number.desc()).limit(1))


def _count(query, cap: int | None):
    if cap is not None:
        query = query.limit(cap)
    return select(func.count()).select_from(query.subquery()).scalar_subquery()


def _labels_since(project_id: int, since: datetime | None, cap: int | None):
    # The project is looked up per annotation (a correlated primary-key read), never by a join: with one
    # big project the planner would otherwise scan every region of it to join a handful of new labels.
    project_of = select(Region.project_id).where(Region.id == Annotation.region_id).scalar_subquery()
    query = select(Annotation.id).where(Annotation.region_id.is_not(None), project_of == project_id, CURRENT)
    if since is not None:
        query = query.where(Annotation.created_at >= since)
    return _count(query, cap)


def _waiting(project_id: int, now: datetime, cap: int | None):
    """Queued regions, and leased ones whose lease expired (back in the queue, whether or not anyone
    has noticed yet); two counts, so that each reads its own index. The queue's order (that of
    ix_region_queue) keeps the planner on that index: queued regions are the newest rows, so a scan of
    the table that stops at the first few would read all the labeled ones before them."""
    in_project = Region.project_id == project_id
    queued = (select(Region.id).where(in_project, Region.status == "queued")
              .order_by(Region.score.desc(), Region.id.desc()))
    expired = select(Region.id).where(Region.status == "leased", Region.lease_expires_at <= now, in_project)
    return _count(queued, cap) + _count(expired, cap)


def state_of(session: Session, project_id: int, rule: AutoCycleSettings, now: datetime | None = None, *,
             capped: bool = False) -> AutoCycleState:
    """The project's standing against its rule. `capped` (the check) stops each count at its threshold,
    counts only for the rules that are on, and nothing while a cycle is active or the rule is off."""
    last = latest_cycle(session, project_id)
    state = AutoCycleState(rule, last, 0, 0)
    if capped and (state.active or not rule.enabled):
        return state
    since = None if last is None else (last.started_at or last.created_at)
    counts = {}
    if rule.after_labeled or not capped:
        counts["labeled_since"] = _labels_since(project_id, since, rule.after_labeled if capped else None)
    if rule.when_queue_below or not capped:
        counts["waiting"] = _waiting(project_id, now or utcnow(), rule.when_queue_below if capped else None)
    if counts:
        for name, value in zip(counts, session.execute(select(*counts.values())).one(), strict=True):
            setattr(state, name, value)
    return state


def maybe_start_auto_cycle(session: Session, settings, *, project_id: int | None = None,
                           region_id: int | None = None, now: datetime | None = None) -> Cycle | None:
    """Start the project's next cycle if its rule says so; returns the cycle, or None. The project is
    given by its id or by one of its regions. Call it after the submit or skip has been committed: a
    database error here is logged, never raised, since what the caller stored is stored."""
    try:
        return _maybe_start(session, settings, project_id, region_id, now)
    except SQLAlchemyError:
        log.exception("the auto-cycle check failed (project %s, region %s)", project_id, region_id)
        session.rollback()
        return None


def _maybe_start(session: Session, settings, project_id: int | None, region_id: int | None,
                 now: datetime | None) -> Cycle | None:
    query = select(Project.id, Project.auto_cycle)
    if region_id is not None:
        query = query.join(Region, Region.project_id == Project.id).where(Region.id == region_id)
    else:
        query = query.where(Project.id == project_id)
    row = session.execute(query).first()
    reason = None
    if row is not None and (row.auto_cycle or {}).get("enabled"):
        reason = state_of(session, row.id, rule_of(row.auto_cycle), now, capped=True).reason
    if reason is None:
        session.commit()  # ends the read here, so the request's session closes without a round trip
        return None
    try:
        cycle = create_cycle(session, session.get(Project, row.id), trigger="auto")
    except CycleConflict:  # another request started it a moment ago: that is the one cycle
        return None
    log.info("project %s: cycle %s started automatically: %s", row.id, cycle.number, reason)
    dispatch_cycle(session, settings, cycle)
    return cycle

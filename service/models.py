"""SQLAlchemy 2.0 typed models: the schema every part of s4al shares (DESIGN §3)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from service.queue_pg import CREATE_LEASE_FUNCTION, DROP_LEASE_FUNCTION

# Stable constraint names, so Alembic autogenerate compares equal on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    classes: Mapped[list[Any]] = mapped_column(JSON)  # [{"id", "name", "color"}], ids 0..K-1
    region: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"kind": "grid", "size": 32}
    ignore_index: Mapped[int] = mapped_column(Integer, default=255)
    training: Mapped[dict[str, Any]] = mapped_column(JSON)  # TrainConfig overrides + acquisition
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # review, gold, overlap (QualitySettings)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    auto_cycle: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # AutoCycleSettings; None = off

    images: Mapped[list["Image"]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                                 passive_deletes=True)


class Image(Base):
    __tablename__ = "image"
    __table_args__ = (UniqueConstraint("project_id", "stem"), Index("ix_image_project_split", "project_id",
                                                                   "split", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    stem: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(500))  # relative to the storage dir
    content_type: Mapped[str] = mapped_column(String(50))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(10), default="train")  # train | val
    oracle_mask_path: Mapped[str | None] = mapped_column(String(500))  # ground truth, never shown
    # PseudoSeg: the image classifier's uncertainty at the last cycle (orders the tagging queue).
    tag_uncertainty: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="images")


class Cycle(Base):
    __tablename__ = "cycle"
    __table_args__ = (UniqueConstraint("project_id", "number"), Index("ix_cycle_status", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    # queued running succeeded failed cancelled
    status: Mapped[str] = mapped_column(String(20), default="queued")
    # manual (an admin asked for it) | auto (the project's auto_cycle rule started it)
    trigger: Mapped[str] = mapped_column(String(10), default="manual", server_default="manual")
    phase: Mapped[str | None] = mapped_column(String(40))
    step: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the settings this cycle ran with
    checkpoint_path: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))  # hostname/pid that holds it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()


class Region(Base):
    __tablename__ = "region"
    __table_args__ = (
        UniqueConstraint("cycle_id", "image_id", "x", "y", "w", "h", "superpixel_id"),
        # The queue's hot path: the best queued region of a project. `id` makes the order total, so
        # `ORDER BY score DESC, id DESC LIMIT 1` is one backward index scan, whatever the statistics.
        Index("ix_region_queue", "project_id", "status", "score", "id"),
        # An annotator's live lease on a project.
        Index("ix_region_lease", "project_id", "lease_token_id", "status"),
        Index("ix_region_expiry", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    cycle_id: Mapped[int | None] = mapped_column(ForeignKey("cycle.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="grid")  # grid | superpixel
    x: Mapped[int] = mapped_column(Integer)  # bounding box; a superpixel keeps its box here
    y: Mapped[int] = mapped_column(Integer)
    w: Mapped[int] = mapped_column(Integer)
    h: Mapped[int] = mapped_column(Integer)
    superpixel_id: Mapped[int] = mapped_column(Integer, default=-1)  # -1 for grid cells
    score: Mapped[float] = mapped_column(Float, default=0.0)
    # queued leased labeled skipped superseded, or gold: a region with a known answer, never labeled
    status: Mapped[str] = mapped_column(String(20), default="queued")
    gold_mask_path: Mapped[str | None] = mapped_column(String(500))  # a gold region's answer; never sent
    overlap: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # annotators wanted
    model_version: Mapped[str | None] = mapped_column(String(100))
    prelabel_path: Mapped[str | None] = mapped_column(String(500))
    lease_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    lease_token_id: Mapped[int | None] = mapped_column(ForeignKey("token.id", ondelete="SET NULL"))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Lease states that keep a region away from the lease's token for good.
EXCLUDING_STATES = "state IN ('skipped', 'rejected', 'consensus')"


class Lease(Base):
    """History of every lease handed out; the live one is mirrored on its Region."""

    __tablename__ = "lease"
    __table_args__ = (
        # The claim excludes the regions a token skipped; skips are few, so a partial index keeps that
        # lookup tiny however long the lease history grows.
        Index("ix_lease_skipped", "token_id", "region_id", postgresql_where=text(EXCLUDING_STATES),
              sqlite_where=text(EXCLUDING_STATES)),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id", ondelete="CASCADE"), index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("token.id", ondelete="SET NULL"), index=True)
    # active released skipped submitted expired; rejected (its annotation was rejected in review);
    # consensus (submitted on a region that wants more annotators): the last three keep the region from
    # this token.
    state: Mapped[str] = mapped_column(String(20), default="active")
    page: Mapped[str | None] = mapped_column(String(64))  # the page instance (browser tab) that holds it
    reason: Mapped[str | None] = mapped_column(Text)  # why it was skipped
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()


class Annotation(Base):
    """Append-only. A box of class ids (255 = unlabeled) on an image; the newest wins."""

    __tablename__ = "annotation"
    __table_args__ = (
        UniqueConstraint("token_id", "idempotency_key"),
        # The auto-cycle rule counts the labels submitted since the last cycle after every submit.
        Index("ix_annotation_created", "created_at"),
        Index("ix_annotation_image", "image_id", "created_at"),
        Index("ix_annotation_review", "review_state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id", ondelete="CASCADE"), index=True)
    lease_id: Mapped[str | None] = mapped_column(String(64))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("token.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(20), default="human")  # human | oracle | initial
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    w: Mapped[int] = mapped_column(Integer)
    h: Mapped[int] = mapped_column(Integer)
    mask_path: Mapped[str] = mapped_column(String(500))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    mask_sha256: Mapped[str | None] = mapped_column(String(64))  # a replayed key must carry the same mask
    # Whether training and exports read it: not while awaiting review, nor once rejected, fixed, a gold
    # answer's submission or one of a consensus region's votes (their majority is its own annotation).
    in_labels: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    review_state: Mapped[str | None] = mapped_column(String(20))  # pending accepted rejected fixed superseded
    review_reason: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("token.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None] = mapped_column()
    # Effort, as the page measured it (seconds focused with recent input, strokes) and as the server
    # counts it against the pre-label shown (None when there was none).
    active_seconds: Mapped[float | None] = mapped_column(Float)
    strokes: Mapped[int | None] = mapped_column(Integer)
    labeled_pixels: Mapped[int | None] = mapped_column(Integer)
    pixels_changed: Mapped[int | None] = mapped_column(Integer)
    unchanged: Mapped[bool | None] = mapped_column(Boolean)
    # A submission on a gold region, scored against its answer.
    gold_accuracy: Mapped[float | None] = mapped_column(Float)
    gold_miou: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# An annotator's revision of a submission replaces it (service/revisions.py): the replaced annotation is
# marked superseded, and whatever counts submissions counts only the current ones.
SUPERSEDED = "superseded"
CURRENT = Annotation.review_state.is_distinct_from(SUPERSEDED)


class ImageTag(Base):
    """Image-level labels: the classes present in an image (PseudoSeg). The newest row wins."""

    __tablename__ = "image_tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    class_ids: Mapped[list[Any]] = mapped_column(JSON)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("token.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    __tablename__ = "token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | reviewer | annotator
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # The project ids an annotator token may use; NULL = every project (admins are always NULL).
    projects: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))


# The lease's server-side function (service/queue_pg.py) belongs to the schema on PostgreSQL: made and
# dropped with the tables when they are made from these models; migration 0004 makes it otherwise.
event.listen(Base.metadata, "after_create", DDL(CREATE_LEASE_FUNCTION).execute_if(dialect="postgresql"))
event.listen(Base.metadata, "before_drop", DDL(DROP_LEASE_FUNCTION).execute_if(dialect="postgresql"))

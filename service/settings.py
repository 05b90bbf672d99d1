"""The one Settings object. Every field is an env var `S4AL_<FIELD>`; defaults form the embedded mode."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # Empty values (S4AL_DATABASE_URL= in .env.example) mean "the default", not "".
    model_config = SettingsConfigDict(env_prefix="S4AL_", env_file=".env", extra="ignore",
                                      env_ignore_empty=True)

    data_dir: Path = Field(Path("./s4al-data"), description="Root of the SQLite file and the storage.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite under data_dir.")
    broker_url: str | None = Field(None, description="Celery broker; default: embedded, no server.")
    import_root: Path = Field(Path("."), description="Dataset folders may only be imported from below here.")
    max_image_pixels: int = Field(40_000_000, description="Uploads with more pixels are refused (413).")
    max_upload_bytes: int = Field(64 * 1024 * 1024, description="Largest accepted file in one upload.")
    max_upload_request_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="Largest multipart request (all its files together); a larger "
        "one is refused (413) from its Content-Length, before its body is read, or once it streams past.")
    max_json_bytes: int = Field(1024 * 1024, ge=1, description="Largest request body that is not an upload "
                                "(JSON); larger ones are refused (413) before they are read or parsed.")
    body_timeout_seconds: float = Field(30.0, gt=0, description="A request body that stops arriving for "
                                        "this long is answered 408 and its connection closed.")
    api_docs: bool = Field(False, description="Serve Swagger UI (/docs) and ReDoc (/redoc). They load their "
                           "scripts from a CDN, on the origin whose pages keep the token, hence off by "
                           "default; /openapi.json is always served.")
    lease_ttl_seconds: int = Field(600, description="How long an annotator holds a region.")
    token_cache_seconds: float = Field(
        30.0, ge=0, description="How long an API worker trusts a token it looked up; a token revoked by "
        "another worker or the CLI stops working within this time (at once on the worker that revoked "
        "it). 0 = look it up on every request.")
    skips_to_retire: int = Field(3, description="Distinct annotators' skips that take a region out of the "
                                 "queue for everyone (status skipped); 0 = never.")
    task_time_limit_seconds: int = Field(6 * 3600, description="Hard limit of one cycle task.")
    heartbeat_stale_seconds: int = Field(300, description="A running cycle silent this long is stale.")
    stale_cycle_action: Literal["fail", "requeue"] = Field("requeue", description="What the reaper does.")
    reaper_interval_seconds: int = Field(60, description="How often the reaper looks for stale cycles.")
    max_cycle_attempts: int = Field(3, ge=1, description="Starts of one cycle before the reaper fails it.")
    cycle_queue: str = Field("gpu", pattern=r"^[A-Za-z0-9._-]+$",
                             description="Celery queue of cycles; workers consume it (-Q).")
    device: str = Field("auto", description="Training device: auto, cpu or cuda.")
    loader_workers: int | None = Field(None, ge=0, description="Processes that decode training crops and "
                                       "scoring images; default: cores - 1, at most 8; 0 = in the worker.")
    decoded_cache_bytes: int = Field(
        16 * 2**30, ge=0, description="Disk for decoded copies of the training images and their labels "
        "(under the project's storage folder), from which training crops read only their rows instead of "
        "decoding whole files: 3 bytes per pixel of an image at its training resolution, 1 per pixel of "
        "a label (a 2048x1024 image, labeled, at full resolution: 8 MiB). Labeled images are cached first; "
        "those beyond the limit are decoded for every crop. 0 = no copies.")
    host: str = Field("127.0.0.1", description="Where `s4al serve` listens.")
    port: int = Field(8000, description="Port of `s4al serve`.")
    public_url: str | None = Field(None, description="URL printed for annotators; default http://host:port.")
    worker_stop_grace_seconds: float = Field(
        10.0, gt=0, description="`s4al serve`'s embedded worker: after SIGQUIT (cold shutdown), this long "
        "to stop before SIGKILL; also when `serve` itself died and the worker notices its parent is gone.")

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 's4al.db').resolve()}"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

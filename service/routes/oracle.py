"""The oracle annotator as an admin endpoint (for benchmarks of the running service)."""

from fastapi import APIRouter, HTTPException, Request, status

from service.auth import AdminToken, SessionDep
from service.oracle import NoGroundTruth, run_oracle
from service.queue import QueueError
from service.schemas.common import ProjectId
from service.schemas.cycle import OracleRequest, OracleResult

router = APIRouter(prefix="/api/projects", tags=["oracle"])


@router.post("/{project_id}/oracle", response_model=OracleResult)
def label_with_oracle(project_id: ProjectId, request: Request, session: SessionDep, _: AdminToken,
                      body: OracleRequest | None = None) -> OracleResult:
    """Label queued regions (best first, up to `limit`) from the ground truth imported with
    `--masks oracle`, through the annotators' lease + submit path. 404 unknown project; 409 when the
    project has no ground truth."""
    try:
        result = run_oracle(session, request.app.state.settings, project_id, body.limit if body else None)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except NoGroundTruth as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except QueueError as exc:
        raise HTTPException(exc.status, exc.message) from exc
    return OracleResult(project_id=result.project_id, labeled=result.labeled, remaining=result.remaining)

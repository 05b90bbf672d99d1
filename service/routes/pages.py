"""The web pages: static HTML/CSS/JS modules from web/, sent with a strict Content-Security-Policy.

The pages carry no inline script or style and no third-party origin, so the policy allows only this
origin's files; canvases draw from `blob:` URLs of images fetched with the bearer token.
"""

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate (ETag): a deploy shows up on the next load
}
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
               ".ico": "image/x-icon"}

router = APIRouter(include_in_schema=False)


def _file(rel: str) -> FileResponse:
    if "\x00" in rel or len(rel) > 200:  # no file of ours has such a name; resolve() would raise
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    path = (WEB_DIR / rel).resolve()
    if WEB_DIR not in path.parents or not path.is_file() or path.suffix not in MEDIA_TYPES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)


@router.get("/")
def index_page() -> FileResponse:
    """The project list."""
    return _file("index.html")


@router.get("/annotate/{project}")
def annotate_page(project: str) -> FileResponse:
    """The annotator for a project (by id or name; the page resolves it)."""
    return _file("annotate.html")


@router.get("/tag/{project}")
def tag_page(project: str) -> FileResponse:
    """Tagging mode (PseudoSeg image-level tags): whole images, class toggles, Enter submits."""
    return _file("tag.html")


@router.get("/review/{project}")
def review_page(project: str) -> FileResponse:
    """The review page (reviewer or admin): accept, reject or fix annotations awaiting review."""
    return _file("review.html")


@router.get("/projects/{project_id}")
def dashboard_page(project_id: int) -> FileResponse:
    """A project's dashboard: cycles, the mIoU curve, queue statistics."""
    return _file("dashboard.html")


@router.get("/web/{path:path}")
def web_file(path: str) -> FileResponse:
    return _file(path)

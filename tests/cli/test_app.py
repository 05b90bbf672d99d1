import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import select
from typer.testing import CliRunner

from cli.app import app
from cli.server import ADMIN_TOKEN_FILE, ensure_admin_token
from service.auth import hash_token
from service.models import Image, Token
from service.settings import Settings, get_settings
from tests.service.factories import counts, make_dataset, mask_png

runner = CliRunner()


def test_token_create_prints_a_working_token_once(cli_env, session):
    r = runner.invoke(app, ["token", "create", "--role", "annotator", "--name", "alice"])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert re.fullmatch(r"s4al_[\w-]{40,}", token)
    row = session.scalar(select(Token).where(Token.token_hash == hash_token(token)))
    assert (row.name, row.role) == ("alice", "annotator")
    listed = runner.invoke(app, ["token", "list"])
    assert "alice" in listed.stdout and token not in listed.stdout
    assert runner.invoke(app, ["token", "revoke", str(row.id)]).exit_code == 0
    session.refresh(row)
    assert row.revoked
    assert runner.invoke(app, ["token", "create", "--role", "root", "--name", "x"]).exit_code != 0


def test_token_create_with_project_scopes(cli_env, session):
    from tests.service.queue_helpers import seed_queue

    a = seed_queue(session, cli_env, name="streets")
    b = seed_queue(session, cli_env, name="fields")
    r = runner.invoke(app, ["token", "create", "--name", "alice", "--project", "streets", "--project",
                            str(b.project_id)])
    assert r.exit_code == 0, r.output
    row = session.scalar(select(Token).where(Token.token_hash == hash_token(r.stdout.strip())))
    assert sorted(row.projects) == sorted([a.project_id, b.project_id])
    assert f"projects {min(row.projects)},{max(row.projects)}" in runner.invoke(app, ["token", "list"]).stdout
    missing = runner.invoke(app, ["token", "create", "--name", "x", "--project", "nowhere"])
    assert missing.exit_code == 1 and "no project 'nowhere'" in missing.output
    admin = runner.invoke(app, ["token", "create", "--name", "x", "--role", "admin", "--project", "streets"])
    assert admin.exit_code == 1 and "every project" in admin.output


def test_import_command(cli_env, session, tmp_path):
    ds = make_dataset(tmp_path / "ds")
    r = runner.invoke(app, ["import", str(ds), "--project", "camvid", "--masks", "initial"])
    assert r.exit_code == 0, r.output
    assert '"images": 3' in r.stdout and '"initial_masks": 3' in r.stdout
    assert counts(session) == {"project": 1, "image": 3, "annotation": 3}


def test_import_command_refuses_and_names_the_file(cli_env, session, tmp_path):
    ds = make_dataset(tmp_path / "ds")
    (ds / "masks" / "b.png").write_bytes(mask_png(np.zeros((2, 2), np.uint8)))
    r = runner.invoke(app, ["import", str(ds), "--project", "camvid", "--masks", "oracle"])
    assert r.exit_code == 1
    assert "masks/b.png" in r.stderr and "nothing was written" in r.stderr
    r = runner.invoke(app, ["import", str(ds), "--project", "camvid", "--no-create"])
    assert r.exit_code == 1 and "does not exist" in r.stderr
    assert counts(session) == {"project": 0, "image": 0, "annotation": 0}
    assert session.scalar(select(Image)) is None


def test_migrate_command(empty_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("S4AL_DATABASE_URL", empty_db_url)
    monkeypatch.setenv("S4AL_DATA_DIR", str(tmp_path / "d"))
    get_settings.cache_clear()
    try:
        r = runner.invoke(app, ["migrate"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    from tests.service.test_migrations import _state

    assert _state(empty_db_url)[2] == []


def test_admin_token_is_kept_in_the_data_dir(settings, session):
    token, new = ensure_admin_token(settings)
    assert new
    path = settings.data_dir / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_token(settings) == (token, False)
    row = session.scalar(select(Token).where(Token.token_hash == hash_token(token)))
    assert (row.name, row.role) == ("admin", "admin")
    row.revoked = True
    session.commit()
    token2, new2 = ensure_admin_token(settings)
    assert new2 and token2 != token and path.read_text().strip() == token2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_migrates_prints_url_and_token_and_answers(tmp_path):
    """The README's first command, on a fresh data dir (embedded SQLite)."""
    port = _free_port()
    env = {**os.environ, "S4AL_DATA_DIR": str(tmp_path / "data")}
    env.pop("S4AL_DATABASE_URL", None)
    s4al = Path(sys.executable).parent / "s4al"
    proc = subprocess.Popen([str(s4al), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("admin token" in x for x in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text, text
        token = re.search(r"admin token \(new\): (\S+)", text).group(1)
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"{base}/openapi.json", timeout=5).status_code == 200
        me = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200 and me.json()["role"] == "admin"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    saved = Settings(data_dir=tmp_path / "data", _env_file=None)
    assert (saved.data_dir / ADMIN_TOKEN_FILE).read_text().strip() == token

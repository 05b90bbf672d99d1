"""What every command group needs: the settings, a session on their database, a project by reference."""

import typer


def settings(**overrides):
    """The process settings, with the given non-None fields replaced (command-line options)."""
    from service.settings import get_settings

    current = get_settings()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return current.model_copy(update=overrides) if overrides else current


def session(settings):
    """A session on the settings' database; an embedded one is migrated first (cheap when current)."""
    from service.db import session_factory
    from service.migrate import prepare_embedded

    prepare_embedded(settings)
    return session_factory(settings.sqlalchemy_url)()


def find_project(session, ref: str):
    """A project by reference, with the rule the pages use: all digits is an id, anything else a name.
    Exits with a message when there is none."""
    from service.projects import project_by_ref

    project = project_by_ref(session, ref)
    if project is None:
        typer.echo(f"error: no project {ref!r} (give its name or id; `s4al import` creates one)", err=True)
        raise typer.Exit(1)
    return project

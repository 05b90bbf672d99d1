import pytest

from service.settings import get_settings


@pytest.fixture
def cli_env(settings, monkeypatch):
    """Point the CLI (which reads Settings from the environment) at the test database and storage, on CPU."""
    monkeypatch.setenv("S4AL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("S4AL_DATABASE_URL", settings.sqlalchemy_url)
    monkeypatch.setenv("S4AL_IMPORT_ROOT", str(settings.import_root))
    monkeypatch.setenv("S4AL_DEVICE", "cpu")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()

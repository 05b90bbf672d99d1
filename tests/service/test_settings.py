from pathlib import Path

from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting_with_its_default():
    text = (REPO / ".env.example").read_text()
    listed = {line.split("=", 1)[0].strip() for line in text.splitlines()
              if line.strip() and not line.lstrip().startswith("#")}
    assert listed == {f"S4AL_{name.upper()}" for name in Settings.model_fields}
    assert Settings(_env_file=REPO / ".env.example") == Settings(_env_file=None)


def test_defaults_are_the_embedded_mode(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 's4al.db'}"
    assert s.storage_dir == tmp_path / "storage"
    assert s.max_image_pixels == 40_000_000
    pg = Settings(_env_file=None, database_url="postgresql+psycopg://u@h/db")
    assert pg.sqlalchemy_url == "postgresql+psycopg://u@h/db"

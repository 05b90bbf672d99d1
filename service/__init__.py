"""s4al service: FastAPI app, database, storage and CLI. Never imports torch."""

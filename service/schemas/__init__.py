"""Pydantic v2 request/response schemas, one module per resource (XCreate / XUpdate / XPublic)."""

"""Alembic migrations of the central schema."""

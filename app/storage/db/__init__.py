"""SQL storage: tables, engine and sessions, migrations."""

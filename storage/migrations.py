"""Versioned schema migrations: append, never edit a released one."""

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE locations (
            aor         TEXT NOT NULL,
            contact_uri TEXT NOT NULL,
            contact     TEXT NOT NULL,
            expires_at  REAL NOT NULL,
            q           REAL NOT NULL DEFAULT 1.0,
            call_id     TEXT NOT NULL,
            cseq        INTEGER NOT NULL,
            transport   TEXT NOT NULL,
            source_ip   TEXT NOT NULL,
            source_port INTEGER NOT NULL,
            local_ip    TEXT NOT NULL DEFAULT '',
            local_port  INTEGER NOT NULL DEFAULT 0,
            user_agent  TEXT NOT NULL DEFAULT '',
            instance    TEXT,
            registered_at REAL NOT NULL,
            PRIMARY KEY (aor, contact_uri)
        );
        CREATE INDEX locations_expiry ON locations (expires_at);
        CREATE TABLE security_events (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            at     REAL NOT NULL,
            source TEXT NOT NULL,
            kind   TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        );
        """,
    ),
]

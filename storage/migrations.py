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
    (
        2,
        """
        CREATE TABLE cdr (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id       TEXT NOT NULL,
            leg           TEXT NOT NULL,
            leg_call_id   TEXT NOT NULL DEFAULT '',
            start         REAL NOT NULL,
            answer        REAL,
            end           REAL NOT NULL,
            ring_seconds  REAL NOT NULL DEFAULT 0,
            talk_seconds  REAL NOT NULL DEFAULT 0,
            caller        TEXT NOT NULL DEFAULT '',
            called        TEXT NOT NULL DEFAULT '',
            source        TEXT NOT NULL DEFAULT '',
            did           TEXT NOT NULL DEFAULT '',
            destination   TEXT NOT NULL DEFAULT '',
            disposition   TEXT NOT NULL,
            sip_status    INTEGER,
            q850_cause    INTEGER,
            hangup_by     TEXT NOT NULL DEFAULT '',
            recording     TEXT,
            rtp_rx        INTEGER,
            rtp_lost      INTEGER,
            rtp_jitter_ms REAL
        );
        CREATE INDEX cdr_start ON cdr (start);
        CREATE INDEX cdr_call ON cdr (call_id);
        """,
    ),
    (
        3,
        """
        CREATE TABLE recordings (
            id             TEXT PRIMARY KEY,
            call_id        TEXT NOT NULL,
            path           TEXT NOT NULL,
            started        REAL NOT NULL,
            seconds        REAL NOT NULL DEFAULT 0,
            paused_seconds REAL NOT NULL DEFAULT 0,
            channels       INTEGER NOT NULL DEFAULT 2,
            format         TEXT NOT NULL DEFAULT 'wav',
            caller         TEXT NOT NULL DEFAULT '',
            called         TEXT NOT NULL DEFAULT '',
            agent          TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX recordings_call ON recordings (call_id);
        CREATE INDEX recordings_started ON recordings (started);
        """,
    ),
    (
        4,
        """
        CREATE TABLE queue_log (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            at        REAL NOT NULL,
            call_id   TEXT NOT NULL DEFAULT '',
            queue     TEXT NOT NULL DEFAULT '',
            agent     TEXT NOT NULL DEFAULT '',
            event     TEXT NOT NULL,
            caller    TEXT NOT NULL DEFAULT '',
            did       TEXT NOT NULL DEFAULT '',
            position  INTEGER,
            wait      REAL,
            talk      REAL,
            reason    TEXT NOT NULL DEFAULT '',
            state     TEXT NOT NULL DEFAULT '',
            prev      TEXT NOT NULL DEFAULT '',
            seconds   REAL
        );
        CREATE INDEX queue_log_at ON queue_log (at);
        CREATE INDEX queue_log_call ON queue_log (call_id);
        CREATE TABLE voicemail (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            mailbox   TEXT NOT NULL,
            caller    TEXT NOT NULL DEFAULT '',
            call_id   TEXT NOT NULL DEFAULT '',
            at        REAL NOT NULL,
            seconds   REAL NOT NULL DEFAULT 0,
            path      TEXT NOT NULL,
            heard     INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX voicemail_box ON voicemail (mailbox, heard);
        """,
    ),
    (
        5,
        """
        CREATE TABLE leads (
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
            campaign       TEXT NOT NULL,
            phone          TEXT NOT NULL,
            name           TEXT NOT NULL DEFAULT '',
            timezone       TEXT NOT NULL DEFAULT '',
            fields         TEXT NOT NULL DEFAULT '{}',
            state          TEXT NOT NULL DEFAULT 'new',
            attempts       INTEGER NOT NULL DEFAULT 0,
            next_at        REAL NOT NULL DEFAULT 0,
            last_outcome   TEXT NOT NULL DEFAULT '',
            last_at        REAL,
            disposition    TEXT NOT NULL DEFAULT '',
            callback_agent TEXT NOT NULL DEFAULT '',
            source         TEXT NOT NULL DEFAULT '',
            line           INTEGER,
            UNIQUE (campaign, phone)
        );
        CREATE INDEX leads_due ON leads (campaign, state, next_at);
        CREATE TABLE lead_attempts (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            lead_id       INTEGER NOT NULL,
            campaign      TEXT NOT NULL,
            at            REAL NOT NULL,
            outcome       TEXT NOT NULL,
            ring_seconds  REAL,
            call_id       TEXT NOT NULL DEFAULT '',
            agent         TEXT NOT NULL DEFAULT '',
            sip_status    INTEGER,
            amd           TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX lead_attempts_campaign ON lead_attempts (campaign, at);
        CREATE TABLE dialer_ledger (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            campaign  TEXT NOT NULL,
            at        REAL NOT NULL,
            abandoned INTEGER NOT NULL
        );
        CREATE INDEX dialer_ledger_campaign ON dialer_ledger (campaign, at);
        ALTER TABLE cdr ADD COLUMN campaign TEXT NOT NULL DEFAULT '';
        ALTER TABLE cdr ADD COLUMN lead_id INTEGER;
        """,
    ),
    (
        6,
        """
        CREATE TABLE api_tokens (
            hash    TEXT PRIMARY KEY,
            kind    TEXT NOT NULL,
            user    TEXT NOT NULL DEFAULT '',
            role    TEXT NOT NULL,
            name    TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            expires REAL
        );
        """,
    ),
    (
        7,
        """
        CREATE TABLE webhook_outbox (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            webhook    TEXT NOT NULL,
            event_id   TEXT NOT NULL,
            type       TEXT NOT NULL,
            payload    TEXT NOT NULL,
            created    REAL NOT NULL,
            next_at    REAL NOT NULL,
            attempts   INTEGER NOT NULL DEFAULT 0,
            state      TEXT NOT NULL DEFAULT 'pending',
            last_error TEXT NOT NULL DEFAULT '',
            done_at    REAL
        );
        CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_at);
        """,
    ),
    (
        8,
        """
        ALTER TABLE queue_log ADD COLUMN notes TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        9,
        """
        -- a CRM adapter's delivery is several requests: how many of them are done survives a restart
        ALTER TABLE webhook_outbox ADD COLUMN progress INTEGER NOT NULL DEFAULT 0;
        -- the CRM's own id of a call (Bitrix24's CALL_ID), once its register step has answered
        CREATE TABLE crm_calls (
            webhook     TEXT NOT NULL,
            call_id     TEXT NOT NULL,
            external_id TEXT NOT NULL,
            created     REAL NOT NULL,
            PRIMARY KEY (webhook, call_id)
        );
        """,
    ),
    (
        10,
        """
        -- callbacks an agent scheduled for a queue call ("call them back tomorrow at 10")
        CREATE TABLE scheduled_callbacks (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            queue    TEXT NOT NULL,
            number   TEXT NOT NULL,
            at       REAL NOT NULL,
            did      TEXT NOT NULL DEFAULT '',
            source   TEXT NOT NULL DEFAULT '',
            call_id  TEXT NOT NULL DEFAULT '',
            agent    TEXT NOT NULL DEFAULT '',
            state    TEXT NOT NULL DEFAULT 'pending',
            created  REAL NOT NULL
        );
        CREATE INDEX scheduled_callbacks_due ON scheduled_callbacks (state, at);
        """,
    ),
    (
        11,
        """
        -- the customer's number in E.164 (CRMs match contacts by it) and the caller's IVR keys
        ALTER TABLE cdr ADD COLUMN customer_e164 TEXT NOT NULL DEFAULT '';
        ALTER TABLE cdr ADD COLUMN ivr_digits TEXT NOT NULL DEFAULT '';
        ALTER TABLE queue_log ADD COLUMN ivr TEXT NOT NULL DEFAULT '';
        """,
    ),
]

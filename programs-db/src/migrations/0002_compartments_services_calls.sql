-- What the compartment, certificate and broker issues record. Times are Unix milliseconds.

-- The C SDK and the services trust anchor compiled into each build (null for
-- builds made before the SDK was compiled in).
ALTER TABLE builds ADD COLUMN sdk_sha256 TEXT
    CHECK (sdk_sha256 IS NULL OR length(sdk_sha256) = 64);
ALTER TABLE builds ADD COLUMN services_anchor_sha256 TEXT
    CHECK (services_anchor_sha256 IS NULL OR length(services_anchor_sha256) = 64);

-- The compartment a run was started in: backend, layers with their status,
-- degraded layers and the insecure flag, as JSON (what the evidence says).
ALTER TABLE runs ADD COLUMN compartment TEXT;

-- Services the broker may call, by the id programs name them with.
CREATE TABLE services (
    id         TEXT    PRIMARY KEY
               CHECK (length(id) BETWEEN 1 AND 64 AND id NOT GLOB '*[^a-z0-9-]*'),
    base_url   TEXT    NOT NULL CHECK (length(base_url) BETWEEN 1 AND 2048),
    ca_pem     TEXT    NOT NULL,  -- the CA the service's TLS certificate must chain to
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Every brokered call of a run: sizes, latency and outcome, never a payload.
CREATE TABLE run_calls (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at             INTEGER NOT NULL,
    service        TEXT    NOT NULL,
    op             TEXT    NOT NULL CHECK (op IN ('read', 'write', 'service_cert')),
    resource       TEXT    NOT NULL DEFAULT '',  -- the collection named in the frame
    request_bytes  INTEGER NOT NULL CHECK (request_bytes >= 0),
    response_bytes INTEGER NOT NULL CHECK (response_bytes >= 0),
    latency_us     INTEGER NOT NULL CHECK (latency_us >= 0),
    outcome        TEXT    NOT NULL,  -- 'ok' or a NACK code
    detail         TEXT               -- for failures: the reason (never a payload)
);
CREATE INDEX run_calls_run_id ON run_calls (run_id);

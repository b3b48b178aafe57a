-- Persistent MUC rooms and their public logs, server-issued and FAST tokens, plugins.

CREATE TABLE muc_rooms (
    domain text COLLATE "C" NOT NULL,
    name   text COLLATE "C" NOT NULL,
    room   jsonb NOT NULL,
    PRIMARY KEY (domain, name)                        -- room load: a domain's rooms
);

CREATE TABLE muc_log (
    domain text COLLATE "C" NOT NULL,
    room   text COLLATE "C" NOT NULL,
    number bigint NOT NULL,
    entry  jsonb NOT NULL,
    PRIMARY KEY (domain, room, number)                -- log paging after a number
);

CREATE TABLE token_keys (
    tenant text COLLATE "C" PRIMARY KEY,
    key    bytea NOT NULL
);

CREATE TABLE token_revocations (
    domain text COLLATE "C" NOT NULL,
    local  text COLLATE "C" NOT NULL,
    seq    bigint NOT NULL,
    PRIMARY KEY (domain, local)
);

CREATE TABLE refresh_tokens (
    domain text COLLATE "C" NOT NULL,
    local  text COLLATE "C" NOT NULL,
    id     text COLLATE "C" NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (domain, local, id)
);

CREATE TABLE fast_tokens (
    domain text COLLATE "C" NOT NULL,
    local  text COLLATE "C" NOT NULL,
    client text COLLATE "C" NOT NULL,
    slots  jsonb NOT NULL,
    PRIMARY KEY (domain, local, client)
);

CREATE TABLE plugin_blobs (
    sha256 text COLLATE "C" PRIMARY KEY,
    wasm   bytea NOT NULL
);

CREATE TABLE plugin_slots (
    tenant text COLLATE "C" NOT NULL,
    slot   text COLLATE "C" NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (tenant, slot)
);

CREATE TABLE plugin_kv (
    tenant text COLLATE "C" NOT NULL,
    slot   text COLLATE "C" NOT NULL,
    key    text COLLATE "C" NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (tenant, slot, key)
);

-- Bytes used per (tenant, slot); its row is locked while a write checks the quota.
CREATE TABLE plugin_kv_usage (
    tenant text COLLATE "C" NOT NULL,
    slot   text COLLATE "C" NOT NULL,
    bytes  bigint NOT NULL,
    PRIMARY KEY (tenant, slot)
);

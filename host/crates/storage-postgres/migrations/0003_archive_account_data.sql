-- The message archive (XEP-0313), its preferences, and small per-account records.

-- One row per archived message of an account, or of a room (local = 'room@service').
-- id is the archive id (microseconds at archiving, unique per owner): id order is
-- archive order.
CREATE TABLE archive (
    domain        text COLLATE "C" NOT NULL,
    local         text COLLATE "C" NOT NULL,
    id            bigint NOT NULL,
    with_jid      text COLLATE "C" NOT NULL,
    with_resource text COLLATE "C",
    outgoing      boolean NOT NULL,
    origin_id     text COLLATE "C",
    stanza        text NOT NULL,
    PRIMARY KEY (domain, local, id)          -- a query without `with`: one index range
);
-- A conversation's messages in order: `with` queries, their counts, retraction.
CREATE INDEX archive_conversation ON archive (domain, local, with_jid, id);

CREATE TABLE archive_prefs (
    domain text COLLATE "C" NOT NULL,
    local  text COLLATE "C" NOT NULL,
    prefs  jsonb NOT NULL,
    PRIMARY KEY (domain, local)
);

CREATE TABLE account_data (
    domain text COLLATE "C" NOT NULL,
    local  text COLLATE "C" NOT NULL,
    kind   text COLLATE "C" NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (domain, local, kind)
);

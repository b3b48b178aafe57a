-- Accounts and what hangs off them, and tenants. Every text key is COLLATE "C": keys
-- compare as bytes (the order sled gives and dumps use), and prefix scans use the index.
-- Records whose shape belongs to a layer above storage are jsonb (readable with SQL).

CREATE TABLE users (
    domain      text COLLATE "C" NOT NULL,
    local       text COLLATE "C" NOT NULL,
    credentials jsonb NOT NULL,
    PRIMARY KEY (domain, local)                       -- login, list and count by domain
);

-- An account's roster version; a row only once its roster changed (token users may have
-- a roster without an account row, so there is no foreign key).
CREATE TABLE roster_versions (
    domain  text COLLATE "C" NOT NULL,
    local   text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (domain, local)
);

CREATE TABLE roster_items (
    domain  text COLLATE "C" NOT NULL,
    local   text COLLATE "C" NOT NULL,
    contact text COLLATE "C" NOT NULL,
    item    jsonb NOT NULL,
    PRIMARY KEY (domain, local, contact)              -- roster fetch: one index range
);

-- Offline messages; id orders one account's queue (a sender's pushes are sequential).
CREATE TABLE offline_messages (
    id       bigserial PRIMARY KEY,
    domain   text COLLATE "C" NOT NULL,
    local    text COLLATE "C" NOT NULL,
    stanza   text NOT NULL,
    stamp_ms bigint NOT NULL
);
CREATE INDEX offline_messages_account ON offline_messages (domain, local, id);  -- offline pop

CREATE TABLE blocks (
    domain text COLLATE "C" NOT NULL,
    local  text COLLATE "C" NOT NULL,
    jid    text COLLATE "C" NOT NULL,
    PRIMARY KEY (domain, local, jid)
);

CREATE TABLE tenants (
    name   text COLLATE "C" PRIMARY KEY,
    record jsonb NOT NULL
);

-- Personal eventing (XEP-0163): one row per node of an account, the node (configuration
-- and items, oldest first) as JSON; the service bounds items per node and item size.
CREATE TABLE pep_nodes (
    domain text COLLATE "C" NOT NULL,
    local  text COLLATE "C" NOT NULL,
    node   text COLLATE "C" NOT NULL,
    value  jsonb NOT NULL,
    PRIMARY KEY (domain, local, node)
);

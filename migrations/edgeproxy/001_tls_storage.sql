-- Tables EdgeProxy owns: TLS certificates and the ACME state that issues them. Safe to apply to a
-- production primary (`edgeproxy migrate`): it creates only edgeproxy_* tables.
--
-- Written only on the primary (EDGEPROXY_PRIMARY_DATABASE_URL). edgeproxy_certificates and
-- edgeproxy_acme_challenges join the publication: every proxy streams them into its snapshot,
-- so a certificate stored by one proxy is served by all, and the HTTP-01 token of an order is
-- answered by whichever proxy the CA reaches. The other two tables are read and written on the
-- primary only.

-- One row per certificate (several per name while one is renewed; the proxy serves, per name,
-- the valid one that expires last). The proxy reads the names and validity from the certificate
-- itself; the columns here are for operators and queries.
CREATE TABLE edgeproxy_certificates (
    id          uuid PRIMARY KEY,          -- chosen by the writer: the sealed key is bound to it
    names       text[] NOT NULL,           -- DNS names of subjectAltName, lower case
    chain_pem   text NOT NULL,             -- PEM, leaf first
    key_sealed  bytea NOT NULL,            -- the private key (PEM), sealed with EDGEPROXY_TLS_STORAGE_KEY (AES-256-GCM, bound to id)
    issuer      text NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX edgeproxy_certificates_names ON edgeproxy_certificates USING gin (names);

-- HTTP-01 challenge tokens of orders running now; removed when the order ends.
CREATE TABLE edgeproxy_acme_challenges (
    token             text PRIMARY KEY,
    key_authorization text NOT NULL,
    name              text NOT NULL,
    expires_at        timestamptz NOT NULL
);

-- The ACME account per directory; its key sealed like certificate keys (bound to the directory URL).
CREATE TABLE edgeproxy_acme_accounts (
    directory_url text PRIMARY KEY,
    email         text,
    account_url   text,
    key_sealed    bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Per name: the fleet's order lock (one proxy orders a name at a time; the expiry is renewed while
-- the order runs, so a proxy that dies frees the name) and the backoff after failed orders.
CREATE TABLE edgeproxy_acme_orders (
    name          text PRIMARY KEY,
    locked_by     text,
    locked_until  timestamptz,
    failures      integer NOT NULL DEFAULT 0,
    retry_after   timestamptz,
    last_outcome  text,
    last_error    text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

// The Postgres store's tables, created and migrated by the server itself.
//
// Each entry of MIGRATIONS moves the schema one version up; the version
// reached is kept in gearman_schema. Servers starting together take an
// advisory lock, so one migrates and the others see the result.

/**
 * SQL for each schema version, in order: entry `i` moves the schema from
 * version `i` to `i + 1`. Append only; never edit a released entry.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: jobs, dead letters, servers and the id sequence.
  `
  CREATE TABLE gearman_jobs (
    id        bigint PRIMARY KEY,           -- the handle number, unique in the cluster
    function  text     NOT NULL,
    uniq      bytea    NOT NULL,
    ukey      bytea,                        -- coalescing key: the unique id, or for "-" a digest of the data
    data      bytea    NOT NULL,
    priority  smallint NOT NULL,            -- 0 high, 1 normal, 2 low
    run_at    bigint   NOT NULL DEFAULT 0,  -- ms since the epoch; 0 runs now
    cron      text     NOT NULL DEFAULT '',
    retries   integer  NOT NULL DEFAULT 0,
    reducer   bytea,
    owner     bigint                        -- gearman_servers.id holding it; NULL: free to claim
  );
  CREATE UNIQUE INDEX gearman_jobs_ukey ON gearman_jobs (function, ukey) WHERE ukey IS NOT NULL;
  CREATE INDEX gearman_jobs_ukey_any ON gearman_jobs (ukey) WHERE ukey IS NOT NULL;
  CREATE INDEX gearman_jobs_free ON gearman_jobs (function, priority, id) WHERE owner IS NULL;
  CREATE INDEX gearman_jobs_owner ON gearman_jobs (owner) WHERE owner IS NOT NULL;
  CREATE TABLE gearman_dead (
    id        bigserial PRIMARY KEY,
    handle    bigint   NOT NULL,
    function  text     NOT NULL,
    uniq      bytea    NOT NULL,
    data      bytea    NOT NULL,
    priority  smallint NOT NULL,
    retries   integer  NOT NULL,
    failed_at bigint   NOT NULL,
    reason    text     NOT NULL
  );
  CREATE TABLE gearman_servers (
    id         bigserial PRIMARY KEY,
    name       text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat  timestamptz NOT NULL DEFAULT now()
  );
  -- Handle numbers of jobs, taken by each server in blocks.
  CREATE SEQUENCE gearman_handles INCREMENT BY 65536;
  `,
  // 2: a dead letter once per failure (job, time, retry count): a commit
  // that timed out gives its dead letters to the next commit and may still
  // land itself, and the two can run at the same moment. Copies written
  // before this version are removed.
  `
  DELETE FROM gearman_dead a USING gearman_dead b
    WHERE a.id > b.id AND a.handle = b.handle AND a.failed_at = b.failed_at
      AND a.retries = b.retries;
  CREATE UNIQUE INDEX gearman_dead_failure ON gearman_dead (handle, failed_at, retries);
  `,
];

/** The schema version this server writes. */
export const SCHEMA_VERSION: number = MIGRATIONS.length;

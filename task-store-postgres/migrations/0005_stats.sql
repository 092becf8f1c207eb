-- Schema version 5 of task-store-postgres: status counts and per-minute activity, kept with
-- every task write (see src/stats.rs), never counted over `tasks` when read.
--
-- Every claim and completion changes two counts of one (tenant, product): updating one total
-- row per status in the writer's transaction would make concurrent workers wait for each
-- other's commit on that row. So writes only INSERT signed changes into `*_changes` tables
-- (no row is shared between writers, no lock is waited for), and a background fold, about
-- once a second and one store at a time (an advisory lock), moves them into the totals with
-- one statement (DELETE ... RETURNING then an upsert). Reads add the totals and the changes
-- not folded yet in one statement, so they see every committed write exactly once.

CREATE TABLE task_counts (
    tenant text COLLATE "C" NOT NULL,
    product text COLLATE "C" NOT NULL,
    status text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (tenant, product, status)
);

CREATE TABLE task_count_changes (
    tenant text COLLATE "C" NOT NULL,
    product text COLLATE "C" NOT NULL,
    status text NOT NULL,
    delta bigint NOT NULL
);

-- The tasks already stored.
INSERT INTO task_counts (tenant, product, status, count)
SELECT tenant, product, status, count(*) FROM tasks GROUP BY tenant, product, status;

-- One minute of one tenant's product: counters, then count, total and maximum (ms) of the
-- queue waits and of each step's run times (s1..s4 in pipeline order).
CREATE TABLE task_activity (
    minute bigint NOT NULL,
    tenant text COLLATE "C" NOT NULL,
    product text COLLATE "C" NOT NULL,
    created bigint NOT NULL DEFAULT 0,
    done bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0,
    wait_count bigint NOT NULL DEFAULT 0,
    wait_total bigint NOT NULL DEFAULT 0,
    wait_max bigint NOT NULL DEFAULT 0,
    s1_count bigint NOT NULL DEFAULT 0,
    s1_total bigint NOT NULL DEFAULT 0,
    s1_max bigint NOT NULL DEFAULT 0,
    s2_count bigint NOT NULL DEFAULT 0,
    s2_total bigint NOT NULL DEFAULT 0,
    s2_max bigint NOT NULL DEFAULT 0,
    s3_count bigint NOT NULL DEFAULT 0,
    s3_total bigint NOT NULL DEFAULT 0,
    s3_max bigint NOT NULL DEFAULT 0,
    s4_count bigint NOT NULL DEFAULT 0,
    s4_total bigint NOT NULL DEFAULT 0,
    s4_max bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tenant, product)
);

CREATE TABLE task_activity_changes (LIKE task_activity INCLUDING DEFAULTS);

-- The last 24 hours of the tasks already stored, as far as their columns tell: creations and
-- ends (queue waits and step times are only kept from now on).
INSERT INTO task_activity (minute, tenant, product, created, done, failed, cancelled)
SELECT minute, tenant, product, sum(created), sum(done), sum(failed), sum(cancelled)
FROM (
    SELECT created_at - created_at % 60000 AS minute, tenant, product,
           1 AS created, 0 AS done, 0 AS failed, 0 AS cancelled
    FROM tasks
    WHERE created_at >= (extract(epoch FROM now()) * 1000)::bigint - 86400000
    UNION ALL
    SELECT finished_at - finished_at % 60000, tenant, product, 0,
           (status = 'done')::int, (status = 'failed')::int, (status = 'cancelled')::int
    FROM tasks
    WHERE finished_at >= (extract(epoch FROM now()) * 1000)::bigint - 86400000
) AS past
GROUP BY minute, tenant, product;

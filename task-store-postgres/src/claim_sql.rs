//! The statements of a claim (see [`crate::claim`]).

/// Takes the transaction-scoped advisory lock of each limited product, in key order (so two
/// claims never wait for each other crosswise): `$1` the schema, `$2` the products.
pub(crate) const LOCK_PRODUCTS: &str = "
SELECT count(pg_advisory_xact_lock(s.space, s.key)) FROM (
    SELECT DISTINCT hashtext('task-store-postgres product limit ' || $1) AS space,
                    hashtext(p) AS key
    FROM unnest($2::text[]) AS p
    ORDER BY 2
) s";

/// The tasks of each limited product processing with an unexpired lease (`$1` now, `$2` the
/// products), served by `tasks_running_product`. Run after [`LOCK_PRODUCTS`], in the claim's
/// transaction: a claim that waited for the lock sees the commit of the one it waited for.
pub(crate) const RUNNING: &str = "
SELECT p, (SELECT count(*) FROM tasks t
           WHERE t.status = 'processing' AND t.product = p AND t.lease_expires_at > $1)
FROM unnest($2::text[]) AS p";

/// The claim of one priority, tenants taking turns (`task_core::fair`), products within
/// their limits, in one statement:
///
/// - `tenants`: the tenants with pending tasks of the priority, by a skip scan of
///   `tasks_ready_tenant` (one index probe per tenant, however long its queue);
/// - `room`: the room left of each limited product (`$5`, `$6`: its limit less its running
///   tasks, [`RUNNING`], less what this claim took already); full products are in `$2`;
/// - `heads`: each tenant's first claimable task, and the tenant's last turn
///   (`tenant_turns`); the `$3` tenants whose turn comes first;
/// - `locked`: up to `$3` claimable tasks of each of them, in queue order, locked with
///   `FOR UPDATE SKIP LOCKED`;
/// - the result: round by round (each tenant's 1st, then each one's 2nd...), tenants in turn
///   order, at most a product's room of each product, at most `$3`.
///
/// `$1` now, `$2` excluded and full products, `$3` max, `$4` priority rank, `$5` limited
/// products with room left, `$6` that room. (The products to skip are a parameter, not
/// computed in the statement, so that the planner estimates the filter from their real
/// values: an array it cannot see makes it expect no row to pass and sort a tenant's whole
/// queue instead of reading the index in order.) The text is `sql/fair_ready.sql`,
/// which `sql/explain_claim.sql` also runs.
pub(crate) const FAIR_READY: &str = include_str!("../sql/fair_ready.sql");

/// Records the tenants a claim served: each gets a turn value from the `tenant_turn`
/// sequence, earlier picks smaller ones. Rows are locked in tenant order (so claims never
/// wait for each other in a cycle) and never made older (a claim that drew its value earlier
/// may commit later). `$1` the tenants in claim order.
pub(crate) const RECORD_TURNS: &str = "
WITH base AS (SELECT nextval('tenant_turn') * 1048576 AS b)
INSERT INTO tenant_turns (tenant, served)
SELECT p.tenant, base.b + min(p.ord) FROM unnest($1::text[]) WITH ORDINALITY AS p(tenant, ord), base
GROUP BY p.tenant, base.b
ORDER BY p.tenant
ON CONFLICT (tenant) DO UPDATE SET served = greatest(tenant_turns.served, excluded.served)";

//! Claim order across tenants and products, shared by the stores that keep their ready queue in
//! memory (the in-memory store and sled); the PostgreSQL store does the same in SQL.
//!
//! Within a priority, tenants with ready work take turns: each tenant's queue is FIFO (ready
//! time, then creation order), and a claim takes one task per tenant per round, the tenants
//! in turn order. The turn order is the tenant least recently served first ([`Turns`]), then
//! the one whose first ready task is oldest. So a tenant's backlog of 100,000 tasks delays
//! another tenant's single task by at most one round, where a round serves each tenant with
//! ready work once: with two tenants, a claim of 2 or more takes it in its first round, and of
//! two claims of 1 the second at the latest (the backlog's tenant was just served).
//!
//! [`ProductRoom`] applies the claim's excluded products and per-product limits while tasks
//! are taken, so a product at its limit is stepped over and others fill the claim.

use std::collections::HashMap;
use std::hash::Hash;

use crate::ids::{ProductName, TaskId};
use crate::store::ClaimRequest;
use crate::time::Timestamp;

/// One ready task of a tenant's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyEntry<P> {
    /// When it became ready.
    pub ready_at: Timestamp,
    /// The task (its id also orders tasks ready at the same time: ids sort in creation order).
    pub id: TaskId,
    /// Its product.
    pub product: P,
}

/// A tenant's ready tasks of one priority, in queue order, and when it was last served.
pub struct TenantQueue<T, I> {
    /// The tenant (any key the caller wants back with each pick).
    pub tenant: T,
    /// When the tenant was last served ([`Turns::served`]); 0 if never.
    pub served: u64,
    /// Its ready tasks, in queue order.
    pub entries: I,
}

/// Which products a claim may still take: not excluded, and under their limit.
#[derive(Debug, Clone, Default)]
pub struct ProductRoom {
    excluded: Vec<ProductName>,
    room: Vec<(ProductName, usize)>,
}

impl ProductRoom {
    /// The room of `request`, given how many tasks of each product are processing now (with
    /// an unexpired lease), counted over every worker.
    pub fn new(request: &ClaimRequest, mut running: impl FnMut(&ProductName) -> usize) -> Self {
        let room = request
            .product_limits
            .iter()
            .map(|(product, limit)| (product.clone(), limit.saturating_sub(running(product))))
            .collect();
        Self {
            excluded: request.exclude_products.clone(),
            room,
        }
    }

    /// Whether a task of `product` may be taken now.
    pub fn admits(&self, product: &str) -> bool {
        !self.excluded.iter().any(|p| p.as_str() == product)
            && self
                .room
                .iter()
                .filter(|(p, _)| p.as_str() == product)
                .all(|(_, left)| *left > 0)
    }

    /// Counts a task of `product` taken.
    pub fn take(&mut self, product: &str) {
        for (p, left) in &mut self.room {
            if p.as_str() == product {
                *left = left.saturating_sub(1);
            }
        }
    }
}

/// Picks up to `max` tasks from `tenants` (the ready queues of one priority), tenants taking
/// turns, products kept within `room`. Returns the picks in claim order, each with its tenant.
/// Entries `room` does not admit are stepped over.
pub fn take_turns<T, P, E, I>(
    tenants: Vec<TenantQueue<T, I>>,
    max: usize,
    room: &mut ProductRoom,
) -> Result<Vec<(T, TaskId)>, E>
where
    T: Clone,
    P: AsRef<str>,
    I: Iterator<Item = Result<ReadyEntry<P>, E>>,
{
    let mut picked = Vec::new();
    if max == 0 {
        return Ok(picked);
    }
    // Each tenant with an admissible task, by turn: least recently served, then oldest head.
    let mut queues = Vec::with_capacity(tenants.len());
    for queue in tenants {
        let mut entries = queue.entries;
        if let Some(head) = next_admitted(&mut entries, room)? {
            queues.push((queue.served, queue.tenant, Some(head), entries));
        }
    }
    queues.sort_by_key(|(served, _, head, _)| (*served, head.as_ref().map(|h| (h.ready_at, h.id))));
    loop {
        let mut progressed = false;
        for (_, tenant, head, entries) in &mut queues {
            if picked.len() == max {
                return Ok(picked);
            }
            let entry = match head.take() {
                // The head was admitted before this round; room may have run out since.
                Some(entry) if room.admits(entry.product.as_ref()) => Some(entry),
                _ => next_admitted(entries, room)?,
            };
            if let Some(entry) = entry {
                room.take(entry.product.as_ref());
                picked.push((tenant.clone(), entry.id));
                progressed = true;
            }
        }
        if !progressed {
            return Ok(picked);
        }
    }
}

fn next_admitted<P: AsRef<str>, E>(
    entries: &mut impl Iterator<Item = Result<ReadyEntry<P>, E>>,
    room: &ProductRoom,
) -> Result<Option<ReadyEntry<P>>, E> {
    for entry in entries {
        let entry = entry?;
        if room.admits(entry.product.as_ref()) {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// When each tenant was last served by a claim: the turn order of [`take_turns`].
#[derive(Debug, Clone)]
pub struct Turns<T> {
    last: u64,
    served: HashMap<T, u64>,
}

impl<T> Default for Turns<T> {
    fn default() -> Self {
        Self {
            last: 0,
            served: HashMap::new(),
        }
    }
}

impl<T: Eq + Hash + Clone> Turns<T> {
    /// When `tenant` was last served; 0 if never.
    pub fn served(&self, tenant: &T) -> u64 {
        self.served.get(tenant).copied().unwrap_or(0)
    }

    /// Records the tenants of a claim's picks, in claim order: the first one picked is the
    /// first of them to be served again.
    pub fn record<'a>(&mut self, picked: impl IntoIterator<Item = &'a T>)
    where
        T: 'a,
    {
        let first = self.last;
        for tenant in picked {
            if self.served(tenant) > first {
                // Already served earlier in this claim: keep that position.
                continue;
            }
            self.last += 1;
            self.served.insert(tenant.clone(), self.last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn queue(
        tenant: &'static str,
        served: u64,
        tasks: &[(u64, &'static str)],
    ) -> TenantQueue<&'static str, std::vec::IntoIter<Result<ReadyEntry<&'static str>, Infallible>>>
    {
        let entries: Vec<_> = tasks
            .iter()
            .map(|(at, product)| {
                Ok(ReadyEntry {
                    ready_at: Timestamp(*at),
                    id: TaskId::generate(),
                    product: *product,
                })
            })
            .collect();
        TenantQueue {
            tenant,
            served,
            entries: entries.into_iter(),
        }
    }

    fn tenants_of(picked: &[(&'static str, TaskId)]) -> Vec<&'static str> {
        picked.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn tenants_take_turns_least_recently_served_first() {
        let big: Vec<_> = (0..100).map(|i| (i, "p")).collect();
        let queues = vec![queue("a", 0, &big), queue("b", 0, &[(500, "p")])];
        let picked = take_turns(queues, 3, &mut ProductRoom::default()).unwrap();
        assert_eq!(tenants_of(&picked), ["a", "b", "a"], "oldest head first");
        let queues = vec![queue("a", 2, &big), queue("b", 1, &[(500, "p")])];
        let picked = take_turns(queues, 1, &mut ProductRoom::default()).unwrap();
        assert_eq!(tenants_of(&picked), ["b"], "least recently served first");
    }

    #[test]
    fn products_at_their_limit_are_stepped_over() {
        let request =
            ClaimRequest::one(crate::ids::WorkerId::new("w").unwrap(), Default::default())
                .with_product_limit(ProductName::new("p").unwrap(), 3);
        let mut room = ProductRoom::new(&request, |_| 2);
        let queues = vec![queue("a", 0, &[(1, "p"), (2, "p"), (3, "q")])];
        let picked = take_turns(queues, 5, &mut room).unwrap();
        assert_eq!(picked.len(), 2, "one p (room 1), then q");
        assert!(!room.admits("p"));
        assert!(room.admits("q"));
    }

    #[test]
    fn turns_follow_the_order_of_service() {
        let mut turns = Turns::default();
        turns.record(["a", "b", "a"].iter());
        assert!(turns.served(&"a") < turns.served(&"b"));
        turns.record(["a"].iter());
        assert!(turns.served(&"b") < turns.served(&"a"));
        assert_eq!(turns.served(&"c"), 0);
    }
}

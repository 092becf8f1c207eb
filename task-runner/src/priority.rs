//! The rule against starvation: which priority a claim serves first.
//!
//! Claims are strict (high, then medium, then low; FIFO within each) except that out of every
//! ten claim rounds, one serves low first and one serves medium first. Under a steady stream of
//! high-priority work, medium and low tasks therefore still receive at least a tenth of the
//! claims each, while high-priority tasks keep the other eight tenths and every idle slot.

use task_core::ids::Priority;

/// Chooses the priority order of successive claim rounds.
#[derive(Debug, Default, Clone)]
pub struct ClaimSchedule {
    round: u64,
}

impl ClaimSchedule {
    /// The order for the next claim round.
    pub fn next_order(&mut self) -> [Priority; 3] {
        let round = self.round;
        self.round = self.round.wrapping_add(1);
        match round % 10 {
            4 => [Priority::Medium, Priority::Low, Priority::High],
            9 => [Priority::Low, Priority::Medium, Priority::High],
            _ => Priority::ALL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_and_medium_each_lead_one_round_in_ten() {
        let mut schedule = ClaimSchedule::default();
        let firsts: Vec<Priority> = (0..100).map(|_| schedule.next_order()[0]).collect();
        let count = |p| firsts.iter().filter(|f| **f == p).count();
        assert_eq!(count(Priority::High), 80);
        assert_eq!(count(Priority::Medium), 10);
        assert_eq!(count(Priority::Low), 10);
    }
}

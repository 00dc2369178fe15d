//! A set of free address values kept as disjoint intervals, so that taking the lowest,
//! taking a given value and giving one back are all O(log n) in the number of intervals,
//! whatever the size of the range (a /12 or an IPv6 /64 is one interval when empty).

use std::collections::BTreeMap;

/// Disjoint, non-adjacent inclusive intervals, keyed by their last value so the lowest
/// interval's start can be moved in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FreeSet {
    /// last → first
    by_end: BTreeMap<u128, u128>,
}

impl FreeSet {
    /// The set `first..=last`.
    pub(crate) fn full(first: u128, last: u128) -> FreeSet {
        let mut by_end = BTreeMap::new();
        if first <= last {
            by_end.insert(last, first);
        }
        FreeSet { by_end }
    }

    /// Whether `v` is free.
    pub(crate) fn contains(&self, v: u128) -> bool {
        self.by_end
            .range(v..)
            .next()
            .is_some_and(|(_, first)| *first <= v)
    }

    /// Number of free values (saturating: an IPv6 range can hold 2^128).
    pub(crate) fn count(&self) -> u128 {
        self.by_end.iter().fold(0u128, |n, (last, first)| {
            n.saturating_add(last - first).saturating_add(1)
        })
    }

    /// Removes and returns the lowest free value.
    pub(crate) fn take_lowest(&mut self) -> Option<u128> {
        let mut entry = self.by_end.first_entry()?;
        let first = *entry.get();
        if first == *entry.key() {
            entry.remove();
        } else {
            *entry.get_mut() = first + 1;
        }
        Some(first)
    }

    /// Removes `v` if free; returns whether it was.
    pub(crate) fn take(&mut self, v: u128) -> bool {
        let Some((&last, &first)) = self.by_end.range(v..).next() else {
            return false;
        };
        if first > v {
            return false;
        }
        match (first == v, last == v) {
            (true, true) => {
                self.by_end.remove(&last);
            }
            (true, false) => {
                self.by_end.insert(last, v + 1);
            }
            (false, true) => {
                self.by_end.remove(&last);
                self.by_end.insert(v - 1, first);
            }
            (false, false) => {
                self.by_end.insert(v - 1, first);
                self.by_end.insert(last, v + 1);
            }
        }
        true
    }

    /// Gives `v` back; returns false if it was already free.
    pub(crate) fn give(&mut self, v: u128) -> bool {
        if self.contains(v) {
            return false;
        }
        // The interval ending right before v, and the one starting right after it.
        let before = v.checked_sub(1).and_then(|p| self.by_end.get(&p).copied());
        let after = v.checked_add(1).and_then(|n| {
            self.by_end
                .range(n..)
                .next()
                .filter(|(_, first)| **first == n)
                .map(|(last, _)| *last)
        });
        match (before, after) {
            (Some(first), Some(last)) => {
                self.by_end.remove(&(v - 1));
                self.by_end.insert(last, first);
            }
            (Some(first), None) => {
                self.by_end.remove(&(v - 1));
                self.by_end.insert(v, first);
            }
            (None, Some(last)) => {
                self.by_end.insert(last, v);
            }
            (None, None) => {
                self.by_end.insert(v, v);
            }
        }
        true
    }

    /// Number of intervals (for memory accounting in benchmarks and tests).
    pub(crate) fn intervals(&self) -> usize {
        self.by_end.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn behaves_like_a_set() {
        let mut s = FreeSet::full(10, 20);
        let mut model: BTreeSet<u128> = (10..=20).collect();
        let ops: [(bool, u128); 14] = [
            (true, 15),
            (true, 10),
            (true, 20),
            (true, 15),
            (false, 15),
            (true, 11),
            (false, 10),
            (true, 12),
            (false, 11),
            (false, 30),
            (true, 14),
            (false, 14),
            (true, 16),
            (false, 16),
        ];
        for (take, v) in ops {
            let a = if take { s.take(v) } else { s.give(v) };
            let b = if take {
                model.remove(&v)
            } else {
                model.insert(v)
            };
            assert_eq!(a, b, "{take} {v}");
            assert_eq!(s.count(), model.len() as u128);
            for x in 0..40 {
                assert_eq!(s.contains(x), model.contains(&x), "{x}");
            }
        }
        while let Some(v) = s.take_lowest() {
            assert_eq!(Some(v), model.pop_first());
        }
        assert!(model.is_empty());
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut s = FreeSet::full(u128::MAX - 1, u128::MAX);
        assert!(s.take(u128::MAX));
        assert!(s.give(u128::MAX));
        assert_eq!(s.take_lowest(), Some(u128::MAX - 1));
        assert_eq!(s.take_lowest(), Some(u128::MAX));
        assert_eq!(s.take_lowest(), None);
        assert!(s.give(u128::MAX));
        assert!(s.give(0));
        assert_eq!(FreeSet::full(0, u128::MAX).count(), u128::MAX);
    }
}

//! One poison-tolerant lock for every crate of the family.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the guard even when a thread panicked while holding it: the data
/// behind our locks stays consistent at every await-free step, so a panic elsewhere must
/// not take every later caller down with it.
///
/// ```
/// let m = std::sync::Mutex::new(1);
/// *bmc_core::sync::lock(&m) += 1;
/// assert_eq!(*bmc_core::sync::lock(&m), 2);
/// ```
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

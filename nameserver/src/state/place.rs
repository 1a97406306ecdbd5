//! Placement and the API's view of a block: reads of the state, and the soft reservations.

use super::{Dataserver, State};

impl State {
    pub fn live_dataservers(&self) -> impl Iterator<Item = &Dataserver> {
        self.dataservers.values().filter(|d| d.alive)
    }

    /// Picks `n` live dataservers with the most free space, excluding `exclude`.
    pub fn place(&self, n: usize, exclude: &[u32]) -> Option<Vec<u32>> {
        self.place_where(n, |d| !exclude.contains(&d.id))
    }

    /// Picks `n` live dataservers with the most free space among those `eligible` accepts.
    pub fn place_where(&self, n: usize, eligible: impl Fn(&Dataserver) -> bool) -> Option<Vec<u32>> {
        let mut best: Vec<&Dataserver> = Vec::with_capacity(n + 1);
        for d in self.live_dataservers().filter(|d| eligible(d)) {
            let at = best.iter().position(|b| d.free() > b.free()).unwrap_or(best.len());
            if at < n {
                best.insert(at, d);
                best.truncate(n);
            }
        }
        (best.len() == n).then(|| best.iter().map(|d| d.id).collect())
    }

    /// Counts `bytes` against the chosen dataservers' free space until their next report, so
    /// that consecutive placements spread instead of all picking the same emptiest servers.
    pub fn reserve(&mut self, dataservers: &[u32], bytes: u64) {
        for id in dataservers {
            if let Some(d) = self.dataservers.get_mut(id) {
                d.reserved = d.reserved.saturating_add(bytes);
            }
        }
    }
}

//! The slaves a master streams to, as Status reports them.

use std::collections::BTreeMap;
use std::time::Instant;

use parking_lot::Mutex;

#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: String,
    pub acked: u64,
    pub lease_id: u64,
    pub lease_until: Instant,
    /// Identifies the connection, so that an old connection's cleanup never undoes a newer one.
    pub session: u64,
    /// The slave process's incarnation, from its LOGIN.
    pub incarnation: u64,
}

#[derive(Default)]
pub struct Peers {
    inner: Mutex<BTreeMap<String, Peer>>,
}

impl Peers {
    pub fn upsert(&self, node: &str, p: Peer) {
        self.inner.lock().insert(node.to_string(), p);
    }

    pub fn update(&self, node: &str, session: u64, f: impl FnOnce(&mut Peer)) {
        if let Some(p) = self.inner.lock().get_mut(node).filter(|p| p.session == session) {
            f(p);
        }
    }

    /// Removes the peer if `session` is still its connection; returns whether it did.
    pub fn remove(&self, node: &str, session: u64) -> bool {
        let mut g = self.inner.lock();
        if g.get(node).is_some_and(|p| p.session == session) {
            g.remove(node);
            true
        } else {
            false
        }
    }

    pub fn get(&self, node: &str) -> Option<Peer> {
        self.inner.lock().get(node).cloned()
    }

    pub fn list(&self) -> Vec<(String, Peer)> {
        self.inner.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

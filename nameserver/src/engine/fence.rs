//! The fence: what ends the commit waits of a node that stopped being a writable master (see
//! `Engine::committed_while_master`), one thread for all of them instead of a timer per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;

/// How often the fence looks at the role while requests wait (see `committed_while_master`).
pub const FENCE_TICK: Duration = Duration::from_millis(250);

/// The fence: a thread that releases the commit waiters of a node that is not a writable master,
/// every [`FENCE_TICK`], until the engine is dropped.
pub(super) fn spawn_fence(shared: &Arc<Shared>) -> std::io::Result<()> {
    let shared = Arc::downgrade(shared);
    std::thread::Builder::new().name("fence".into()).spawn(move || {
        loop {
            std::thread::sleep(FENCE_TICK);
            let Some(s) = shared.upgrade() else { return };
            if s.commit.waiting() > 0 && s.role.lock().check_writable(Instant::now()).is_err() {
                s.commit.release_all();
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::engine::Engine;

    #[tokio::test]
    async fn the_fence_releases_the_waits_of_a_node_that_is_not_a_writable_master() {
        let dir = tempfile::tempdir().unwrap();
        // A node opens as a slave of an unknown master: not writable, nothing commits.
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        let c = &engine.shared.commit;
        let waits = (1..=3).map(|s| c.wait(c.committed() + s));
        let released = tokio::time::timeout(FENCE_TICK * 4, futures_util::future::join_all(waits)).await;
        assert!(released.is_ok(), "waits outlived the fence's ticks on a node that cannot commit");
        assert_eq!((c.committed(), c.waiting()), (0, 0), "released, not committed, and no waiter left");
    }
}

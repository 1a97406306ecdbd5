//! The heart's calls to its nameserver's admin API: Status (its health), AssumeRole (a grant of
//! mastership, or following a master), and waiting out a grant that may still be pending.

use std::time::Duration;

use tfs_nameserver::epoch::Epoch;
use tfs_nameserver::proto;
use tracing::warn;

use super::{Health, Heart};

/// A failed AssumeRole: why, and whether the request may still be applied (it timed out or the
/// connection failed, rather than the nameserver refusing it).
pub(super) struct AssumeFailed {
    pub(super) why: String,
    pub(super) maybe_pending: bool,
}

impl Heart {
    pub(super) async fn health(&mut self) -> Health {
        match tokio::time::timeout(Duration::from_millis(400), self.admin.status(proto::StatusRequest {})).await {
            Ok(Ok(r)) => Health::Up(Box::new(r.into_inner())),
            Ok(Err(s)) => Health::Down(s.message().to_string()),
            Err(_) => Health::Hung,
        }
    }

    /// Makes the nameserver a slave of `master` (its replication address and pod name) at `epoch`.
    pub(super) async fn follow(&mut self, epoch: Epoch, master: (String, String)) -> anyhow::Result<()> {
        let slave = self.assume_until(proto::Role::Slave, epoch, master, Duration::from_secs(3600), None, 0).await;
        slave.map_err(|e| anyhow::Error::msg(e.why))
    }

    /// AssumeRole; a master grant carries its end as an instant of CLOCK_BOOTTIME (`until`), so a
    /// request delayed on its way grants only what is left of it (see `requested_role`).
    pub(super) async fn assume_until(
        &mut self,
        role: proto::Role,
        epoch: Epoch,
        (master_addr, master_name): (String, String),
        valid_for: Duration,
        until: Option<Duration>,
        published: u64,
    ) -> Result<(), AssumeFailed> {
        // A slave gets its master's pod IP and, for TLS, the node name its certificate carries.
        let req = proto::AssumeRoleRequest {
            role: role as i32,
            epoch: epoch.get(),
            master_addr,
            master_name,
            valid_for_ms: valid_for.as_millis() as u64,
            published_sync_set_version: published,
            valid_until_boottime_ns: until.map(|u| u.as_nanos() as u64).unwrap_or(0),
        };
        match tokio::time::timeout(Duration::from_secs(2), self.admin.assume_role(req)).await {
            Ok(Ok(_)) => Ok(()),
            // The nameserver answered: it refused, nothing is pending.
            Ok(Err(s)) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument) => {
                Err(AssumeFailed { why: s.message().to_string(), maybe_pending: false })
            }
            Ok(Err(s)) => Err(AssumeFailed { why: s.message().to_string(), maybe_pending: true }),
            Err(_) => Err(AssumeFailed { why: "AssumeRole timed out".into(), maybe_pending: true }),
        }
    }

    /// Waits until the last mastership granted has ended: a grant whose call failed or timed out
    /// may still be queued in the nameserver and applied after a release.
    pub(super) async fn wait_out_grant(&mut self) {
        if let Some(until) = self.granted_until.take() {
            let left = until.saturating_sub(tfs_nameserver::role::boottime());
            if !left.is_zero() {
                warn!(left_ms = left.as_millis() as u64, "waiting out the last mastership granted before releasing");
                tokio::time::sleep(left).await;
            }
        }
    }
}

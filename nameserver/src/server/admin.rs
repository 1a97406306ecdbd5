//! The admin API, bound to loopback only: the heart sidecar in the same pod drives roles with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::epoch::Epoch;
use crate::proto::{self, admin_server::Admin};
use crate::replication::peers::Peers;
use crate::role::{Role, RoleState};

/// Longest validity one AssumeRole may grant: a master must keep being renewed.
pub const MAX_VALID_FOR: Duration = Duration::from_secs(3600);

pub struct AdminApi {
    pub engine: Engine,
    pub peers: Arc<Peers>,
}

/// Turns a request into the role it asks for, or says what is wrong with it.
///
/// Invariant: a master's validity ends no later than `valid_until_boottime_ns` when the caller
/// set it — an instant the heart fixed before sending, on the clock both share — so a request
/// delayed on its way (a throttled or stopped heart or nameserver) grants only what is left.
/// `now` and `boot_now` are read together, at the request's arrival.
pub fn requested_role(r: &proto::AssumeRoleRequest, now: Instant, boot_now: Duration) -> Result<RoleState, String> {
    let role = match r.role() {
        proto::Role::Master => Role::Master,
        proto::Role::Slave => Role::Slave,
        proto::Role::Unspecified => return Err("role must be master or slave".into()),
    };
    if r.epoch == 0 {
        return Err("epoch must be at least 1".into());
    }
    let valid_for = Duration::from_millis(r.valid_for_ms);
    if role == Role::Master && (valid_for.is_zero() || valid_for > MAX_VALID_FOR) {
        return Err(format!("a master needs valid_for in (0, {}s]", MAX_VALID_FOR.as_secs()));
    }
    if role == Role::Slave && r.master_addr.parse::<std::net::SocketAddr>().is_err() && !r.master_addr.contains(':') {
        return Err(format!("a slave needs its master's replication address as host:port, got {:?}", r.master_addr));
    }
    let mut until = now + valid_for.min(MAX_VALID_FOR);
    if r.valid_until_boottime_ns > 0 {
        let deadline = Duration::from_nanos(r.valid_until_boottime_ns);
        until = until.min(crate::role::instant_of_boottime(deadline, now, boot_now));
    }
    Ok(RoleState {
        role,
        epoch: Epoch(r.epoch),
        valid_until: Some(until),
        master_addr: r.master_addr.clone(),
        master_name: r.master_name.clone(),
        draining: false,
    })
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn status(&self, _req: Request<proto::StatusRequest>) -> Result<Response<proto::StatusReply>, Status> {
        Ok(Response::new(super::status::status(&self.engine, &self.peers)))
    }

    async fn assume_role(
        &self,
        req: Request<proto::AssumeRoleRequest>,
    ) -> Result<Response<proto::AssumeRoleReply>, Status> {
        let (now, boot_now) = (Instant::now(), crate::role::boottime());
        let mut role = requested_role(req.get_ref(), now, boot_now).map_err(Status::invalid_argument)?;
        let published = req.get_ref().published_sync_set_version;
        // A renewal of the same mastership keeps a drain in force.
        {
            let cur = self.engine.role().lock();
            if cur.role == role.role && cur.epoch == role.epoch && cur.draining {
                role.draining = true;
            }
        }
        let r = self.engine.set_role(role).await.map_err(Status::failed_precondition)?;
        // A renewal says which sync set version its caller has published where promotions are
        // decided (the heart: on the Lease, before this call). Slaves removed up to that version
        // stop holding commits back only now (engine/commit.rs).
        if r.role == Role::Master && published > 0 {
            self.engine.commit().published(published);
        }
        Ok(Response::new(proto::AssumeRoleReply {
            role: super::status::role_of(r.role) as i32,
            epoch: r.epoch.get(),
            durable_seq: self.engine.durable_seq(),
        }))
    }

    async fn drain(&self, _req: Request<proto::DrainRequest>) -> Result<Response<proto::DrainReply>, Status> {
        let mut role = self.engine.role().lock().clone();
        if !role.is_master() {
            return Err(Status::failed_precondition("only a master can drain"));
        }
        role.draining = true;
        // Through the writer: every write accepted before the drain is logged before it replies.
        let r = self.engine.set_role(role).await.map_err(Status::failed_precondition)?;
        let last = self.engine.state().read().applied_seq;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.engine.commit().wait(last)).await;
        Ok(Response::new(proto::DrainReply {
            epoch: r.epoch.get(),
            last_seq: last,
            committed_seq: self.engine.committed_seq(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(role: proto::Role, epoch: u64, addr: &str, ms: u64) -> proto::AssumeRoleRequest {
        proto::AssumeRoleRequest {
            role: role as i32,
            epoch,
            master_addr: addr.into(),
            valid_for_ms: ms,
            ..Default::default()
        }
    }

    #[test]
    fn a_boottime_deadline_bounds_the_validity() {
        let (now, boot) = (Instant::now(), Duration::from_secs(100));
        let mut r = req(proto::Role::Master, 2, "", 3000);
        r.valid_until_boottime_ns = Duration::from_millis(101_000).as_nanos() as u64;
        assert_eq!(requested_role(&r, now, boot).unwrap().valid_until, Some(now + Duration::from_secs(1)));
        r.valid_until_boottime_ns = Duration::from_secs(99).as_nanos() as u64;
        assert_eq!(requested_role(&r, now, boot).unwrap().valid_until, Some(now), "already past: nothing granted");
        r.valid_until_boottime_ns = Duration::from_secs(200).as_nanos() as u64;
        assert_eq!(requested_role(&r, now, boot).unwrap().valid_until, Some(now + Duration::from_secs(3)));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let now = Instant::now();
        assert!(
            requested_role(&req(proto::Role::Unspecified, 1, "", 1000), now, Duration::ZERO)
                .unwrap_err()
                .contains("master or slave")
        );
        assert!(
            requested_role(&req(proto::Role::Master, 0, "", 1000), now, Duration::ZERO).unwrap_err().contains("epoch")
        );
        assert!(
            requested_role(&req(proto::Role::Master, 1, "", 0), now, Duration::ZERO).unwrap_err().contains("valid_for")
        );
        assert!(
            requested_role(&req(proto::Role::Slave, 1, "nowhere", 1000), now, Duration::ZERO)
                .unwrap_err()
                .contains("host:port")
        );
        let ok = requested_role(&req(proto::Role::Master, 2, "", 3000), now, Duration::ZERO).unwrap();
        assert_eq!(ok.valid_until, Some(now + Duration::from_secs(3)));
    }
}

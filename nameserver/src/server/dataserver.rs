//! The dataserver API (Apply, Renew, GiveUp): checks and maps the protos; the rules, and the
//! master's lease check, are crate::ops::dataserver's.

use tonic::{Request, Response, Status};
use tracing::info;

use super::limits::*;
use super::{Timer, to_status};
use crate::engine::Engine;
use crate::ops::dataserver as ops;
use crate::proto::{self, dataserver_server::Dataserver};

pub struct DataserverApi {
    pub engine: Engine,
}

fn lease_reply(engine: &Engine, lease_id: u64, tasks: Vec<proto::TaskCreate>) -> proto::DataserverLeaseReply {
    proto::DataserverLeaseReply {
        epoch: engine.epoch().get(),
        lease_id,
        lease_expires_in_ms: engine.cfg().dataserver_lease.as_millis() as u64,
        tasks,
    }
}

#[tonic::async_trait]
impl Dataserver for DataserverApi {
    async fn apply(
        &self,
        req: Request<proto::DataserverApplyRequest>,
    ) -> Result<Response<proto::DataserverLeaseReply>, Status> {
        let t = Timer::new(&self.engine, "ds_apply");
        let r = req.into_inner();
        if r.id == 0
            || r.addr.is_empty()
            || r.addr.len() > MAX_ADDR_LEN
            || r.blocks.len() > MAX_BLOCK_REPORT
            || r.capacity == 0
        {
            return t.done(Err(Status::invalid_argument(format!(
                "apply needs a dataserver id > 0, an address of 1..={MAX_ADDR_LEN} bytes, a capacity > 0 and at most {MAX_BLOCK_REPORT} reported blocks"
            ))));
        }
        let id = r.id;
        let plan = ops::plan_if_allowed(&self.engine);
        let res = self.engine.write_unmetered(move |txn| ops::join(txn, r, plan.as_ref())).await.map_err(to_status);
        t.done(res.map(|(lease_id, _)| {
            ops::grant(&self.engine, id, lease_id);
            ops::heard(&self.engine, self.engine.epoch(), id);
            info!(dataserver = id, lease_id, "dataserver lease granted");
            Response::new(lease_reply(&self.engine, lease_id, vec![]))
        }))
    }

    async fn renew(
        &self,
        req: Request<proto::DataserverRenewRequest>,
    ) -> Result<Response<proto::DataserverLeaseReply>, Status> {
        let t = Timer::new(&self.engine, "ds_renew");
        let r = req.into_inner();
        if r.blocks.len() > MAX_BLOCK_REPORT {
            return t.done(Err(Status::invalid_argument(format!("at most {MAX_BLOCK_REPORT} reported blocks"))));
        }
        let (id, lease_id) = (r.id, r.lease_id);
        let plan = ops::plan_if_allowed(&self.engine);
        let res = self.engine.write_unmetered(move |txn| ops::renew(txn, &r, plan.as_ref())).await.map_err(to_status);
        t.done(res.map(|(tasks, _)| {
            ops::grant(&self.engine, id, lease_id);
            ops::heard(&self.engine, self.engine.epoch(), id);
            Response::new(lease_reply(&self.engine, lease_id, tasks))
        }))
    }

    async fn give_up(
        &self,
        req: Request<proto::DataserverGiveUpRequest>,
    ) -> Result<Response<proto::DataserverGiveUpReply>, Status> {
        let t = Timer::new(&self.engine, "ds_give_up");
        let r = req.into_inner();
        let (id, lease_id) = (r.id, r.lease_id);
        let plan = ops::plan_if_allowed(&self.engine);
        let res = self
            .engine
            .write_unmetered(move |txn| ops::give_up(txn, id, lease_id, plan.as_ref()))
            .await
            .map_err(to_status);
        if res.is_ok() {
            ops::release(&self.engine, id);
        }
        t.done(res.map(|_| Response::new(proto::DataserverGiveUpReply { epoch: self.engine.epoch().get() })))
    }
}

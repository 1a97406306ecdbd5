//! Client requests as the gRPC server receives them: protobuf decode, then `server::validate`.
//! Accepted requests are within the limits; refused ones are `InvalidArgument`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tfs_fuzz::Request;
use tfs_nameserver::proto;
use tfs_nameserver::server::limits::*;
use tfs_nameserver::server::validate;
use tfs_nameserver::state::MAX_REPLICAS;
use tonic::{Code, Status};

fn accepted<T>(r: Result<T, Status>) -> Option<T> {
    r.map_err(|s| assert_eq!(s.code(), Code::InvalidArgument, "{s:?}")).ok()
}

fuzz_target!(|data: &[u8]| {
    let [kind, default, msg @ ..] = data else { return };
    let default = 1 + u32::from(*default % 4);
    match Request::from_byte(*kind) {
        Request::CreateBlock => {
            let Ok(req) = proto::CreateBlockRequest::decode(msg) else { return };
            if let Some(v) = accepted(validate::create_block(&req, default)) {
                assert!((1..=MAX_REPLICAS).contains(&v.replicas));
            }
        }
        Request::BatchCreateBlocks => {
            let Ok(req) = proto::BatchCreateBlocksRequest::decode(msg) else { return };
            if let Some(v) = accepted(validate::batch_create_blocks(&req, default)) {
                assert!((1..=MAX_REPLICAS).contains(&v.replicas));
                assert!((1..=MAX_BATCH_CREATE).contains(&v.count));
            }
        }
        Request::BatchGetBlocks => {
            let Ok(req) = proto::BatchGetBlocksRequest::decode(msg) else { return };
            let n = req.block_ids.len();
            if let Some(ids) = accepted(validate::batch_get_blocks(req)) {
                assert!(ids.len() == n && n <= MAX_BATCH_GET);
            }
        }
        Request::CommitBlock => {
            let Ok(req) = proto::CommitBlockRequest::decode(msg) else { return };
            if let Some(c) = accepted(validate::commit_block(req)) {
                assert_eq!(c, req);
                assert!(c.del_size <= c.size && c.del_file_count <= c.file_count);
            }
        }
        Request::ListBlocks => {
            let Ok(req) = proto::ListBlocksRequest::decode(msg) else { return };
            if let Some(l) = accepted(validate::list_blocks(&req)) {
                assert_eq!(l.after, req.after);
                assert!((1..=MAX_LIST as usize).contains(&l.limit));
            }
        }
        Request::Echo => {
            let Ok(req) = proto::EchoRequest::decode(msg) else { return };
            let n = req.payload.len();
            if let Some(p) = accepted(validate::echo(req)) {
                assert!(p.len() == n && n <= MAX_ECHO);
            }
        }
        // Nothing to check beyond the decode.
        Request::GetBlock => drop(proto::GetBlockRequest::decode(msg)),
        Request::RemoveBlock => drop(proto::RemoveBlockRequest::decode(msg)),
        Request::Status => drop(proto::StatusRequest::decode(msg)),
    }
});

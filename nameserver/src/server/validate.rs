//! Checks of client requests, before they cost anything: one pure function per request type, taking
//! the decoded request and returning what the handler needs or the `InvalidArgument` status to
//! answer. No engine and no I/O, so the `grpc_validate` fuzz target drives them straight from
//! protobuf bytes.

use tonic::Status;

use super::limits::*;
use crate::proto;
use crate::state::MAX_REPLICAS;
use crate::state::dedup::RequestId;

/// A create's replica count: the request's, or `default` when it says 0.
fn replicas(req: u32, default: u32) -> Result<usize, Status> {
    let n = if req == 0 { default } else { req };
    if n as usize > MAX_REPLICAS {
        return Err(Status::invalid_argument(format!("replicas must be 1..={MAX_REPLICAS}, got {n}")));
    }
    Ok(n as usize)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateBlock {
    pub replicas: usize,
}

pub fn create_block(req: &proto::CreateBlockRequest, default_replicas: u32) -> Result<CreateBlock, Status> {
    Ok(CreateBlock { replicas: replicas(req.replicas, default_replicas)? })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchCreateBlocks {
    pub replicas: usize,
    /// 1..=MAX_BATCH_CREATE
    pub count: u32,
}

/// A batch with request id `first` (header `tfs-request-id`) uses the ids `first.seq ..= first.seq
/// + count - 1`, one per create (ops `create_blocks`): they must not overflow.
pub fn batch_create_blocks(
    req: &proto::BatchCreateBlocksRequest,
    default_replicas: u32,
    first: Option<RequestId>,
) -> Result<BatchCreateBlocks, Status> {
    let replicas = replicas(req.replicas, default_replicas)?;
    if req.count == 0 || req.count > MAX_BATCH_CREATE {
        return Err(Status::invalid_argument(format!("count must be 1..={MAX_BATCH_CREATE}, got {}", req.count)));
    }
    if let Some(r) = first
        && r.seq.checked_add(u64::from(req.count) - 1).is_none()
    {
        return Err(Status::invalid_argument(format!(
            "request id {}:{}: a batch of {} uses one id per create, from its seq on; past the largest seq",
            r.client, r.seq, req.count
        )));
    }
    Ok(BatchCreateBlocks { replicas, count: req.count })
}

/// The ids to look up, at most MAX_BATCH_GET of them.
pub fn batch_get_blocks(req: proto::BatchGetBlocksRequest) -> Result<Vec<u64>, Status> {
    let ids = req.block_ids;
    if ids.len() > MAX_BATCH_GET {
        return Err(Status::invalid_argument(format!("at most {MAX_BATCH_GET} ids a call, got {}", ids.len())));
    }
    Ok(ids)
}

/// The request itself once its deleted counts are within its totals (versions are checked
/// against the state by the write).
pub fn commit_block(c: proto::CommitBlockRequest) -> Result<proto::CommitBlockRequest, Status> {
    if c.del_size > c.size || c.del_file_count > c.file_count {
        return Err(Status::invalid_argument(format!(
            "deleted size/files ({}/{}) exceed size/files ({}/{})",
            c.del_size, c.del_file_count, c.size, c.file_count
        )));
    }
    Ok(c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListBlocks {
    /// Blocks with ids above this are listed.
    pub after: u64,
    /// 1..=MAX_LIST (DEFAULT_LIST when the request says 0)
    pub limit: usize,
}

pub fn list_blocks(req: &proto::ListBlocksRequest) -> Result<ListBlocks, Status> {
    let limit = match req.limit {
        0 => DEFAULT_LIST,
        n if n > MAX_LIST => return Err(Status::invalid_argument(format!("limit must be 1..={MAX_LIST}, got {n}"))),
        n => n,
    } as usize;
    Ok(ListBlocks { after: req.after, limit })
}

/// A write's request id (a session request's field): both numbers non-zero when present.
pub fn request_id(r: Option<&proto::RequestId>) -> Result<Option<RequestId>, Status> {
    match r {
        None => Ok(None),
        Some(r) if r.client == 0 || r.seq == 0 => {
            Err(Status::invalid_argument(format!("request id {}:{}: client and seq must be non-zero", r.client, r.seq)))
        }
        Some(r) => Ok(Some(RequestId { client: r.client, seq: r.seq })),
    }
}

/// A write's request id given in two places — the message's field and, for a unary call, the
/// `tfs-request-id` header (what clients sent before the field); on a session, the request's and
/// its op's field: either, or both when they agree.
pub fn request_id_of(a: Option<RequestId>, b: Option<RequestId>) -> Result<Option<RequestId>, Status> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => Err(Status::invalid_argument(format!(
            "two request ids, {}:{} and {}:{}: a write has one",
            x.client, x.seq, y.client, y.seq
        ))),
        (a, b) => Ok(a.or(b)),
    }
}

/// A unary write's request id: its message's `request_id`, or its `tfs-request-id` header.
pub fn unary_request_id(
    field: Option<&proto::RequestId>,
    m: &tonic::metadata::MetadataMap,
) -> Result<Option<RequestId>, Status> {
    request_id_of(request_id(field)?, request_id_header(m)?)
}

/// A unary write's request id, from its `tfs-request-id` header (`<client>:<seq>`, decimal).
pub fn request_id_header(m: &tonic::metadata::MetadataMap) -> Result<Option<RequestId>, Status> {
    let Some(v) = m.get(super::REQUEST_ID_HEADER) else { return Ok(None) };
    let bad = || Status::invalid_argument(format!("{}: expected <client>:<seq> in decimal", super::REQUEST_ID_HEADER));
    let (c, s) = v.to_str().map_err(|_| bad())?.split_once(':').ok_or_else(bad)?;
    let r = proto::RequestId { client: c.parse().map_err(|_| bad())?, seq: s.parse().map_err(|_| bad())? };
    request_id(Some(&r))
}

/// The payload to send back, at most MAX_ECHO bytes.
pub fn echo(req: proto::EchoRequest) -> Result<Vec<u8>, Status> {
    let payload = req.payload;
    if payload.len() > MAX_ECHO {
        return Err(Status::invalid_argument(format!("echo payload is limited to {MAX_ECHO} bytes")));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn refused<T: std::fmt::Debug>(r: Result<T, Status>) -> String {
        let s = r.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument);
        s.message().to_string()
    }

    #[test]
    fn request_ids_need_both_numbers_and_the_header_its_form() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(request_id_header(&m).unwrap(), None);
        m.insert(crate::server::REQUEST_ID_HEADER, "7:42".parse().unwrap());
        assert_eq!(request_id_header(&m).unwrap(), Some(RequestId { client: 7, seq: 42 }));
        for bad in ["7", "7:x", "0:1", "1:0", ":"] {
            m.insert(crate::server::REQUEST_ID_HEADER, bad.parse().unwrap());
            assert!(refused(request_id_header(&m)).contains("request"), "{bad}");
        }
        assert!(refused(request_id(Some(&proto::RequestId { client: 0, seq: 3 }))).contains("non-zero"));
    }

    #[test]
    fn a_write_has_one_request_id_in_its_field_or_its_header() {
        let field = proto::RequestId { client: 7, seq: 42 };
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(unary_request_id(None, &m).unwrap(), None);
        assert_eq!(unary_request_id(Some(&field), &m).unwrap(), Some(RequestId { client: 7, seq: 42 }));
        m.insert(crate::server::REQUEST_ID_HEADER, "7:42".parse().unwrap());
        assert_eq!(unary_request_id(None, &m).unwrap(), Some(RequestId { client: 7, seq: 42 }));
        assert_eq!(unary_request_id(Some(&field), &m).unwrap(), Some(RequestId { client: 7, seq: 42 }));
        m.insert(crate::server::REQUEST_ID_HEADER, "7:43".parse().unwrap());
        assert_eq!(refused(unary_request_id(Some(&field), &m)), "two request ids, 7:42 and 7:43: a write has one");
    }

    #[test]
    fn replicas_default_when_zero_and_at_most_the_maximum() {
        let req = |replicas| proto::CreateBlockRequest { replicas, request_id: None };
        assert_eq!(create_block(&req(0), 2).unwrap().replicas, 2);
        assert_eq!(create_block(&req(1), 2).unwrap().replicas, 1);
        assert_eq!(create_block(&req(MAX_REPLICAS as u32), 2).unwrap().replicas, MAX_REPLICAS);
        assert_eq!(refused(create_block(&req(5), 2)), "replicas must be 1..=4, got 5");
        assert_eq!(refused(create_block(&req(u32::MAX), 2)), format!("replicas must be 1..=4, got {}", u32::MAX));
    }

    #[test]
    fn batch_create_checks_replicas_then_count() {
        let req = |count, replicas| proto::BatchCreateBlocksRequest { count, replicas, request_id: None };
        assert_eq!(batch_create_blocks(&req(1, 0), 3, None).unwrap(), BatchCreateBlocks { replicas: 3, count: 1 });
        assert_eq!(batch_create_blocks(&req(MAX_BATCH_CREATE, 4), 2, None).unwrap().count, MAX_BATCH_CREATE);
        assert_eq!(refused(batch_create_blocks(&req(0, 2), 2, None)), "count must be 1..=10000, got 0");
        assert_eq!(
            refused(batch_create_blocks(&req(MAX_BATCH_CREATE + 1, 2), 2, None)),
            "count must be 1..=10000, got 10001"
        );
        // Both wrong: the replica count is reported.
        assert_eq!(refused(batch_create_blocks(&req(0, 9), 2, None)), "replicas must be 1..=4, got 9");
    }

    #[test]
    fn a_keyed_batch_needs_one_seq_per_create() {
        let req = proto::BatchCreateBlocksRequest { count: 3, replicas: 2, request_id: None };
        let id = |seq| Some(RequestId { client: 7, seq });
        assert!(batch_create_blocks(&req, 2, id(u64::MAX - 2)).is_ok());
        assert_eq!(
            refused(batch_create_blocks(&req, 2, id(u64::MAX - 1))),
            format!(
                "request id 7:{}: a batch of 3 uses one id per create, from its seq on; past the largest seq",
                u64::MAX - 1
            )
        );
    }

    #[test]
    fn batch_get_holds_at_most_the_limit() {
        let req = |n: usize| proto::BatchGetBlocksRequest { block_ids: (0..n as u64).collect(), stale: false };
        assert!(batch_get_blocks(req(0)).unwrap().is_empty());
        assert_eq!(batch_get_blocks(req(MAX_BATCH_GET)).unwrap().len(), MAX_BATCH_GET);
        assert_eq!(refused(batch_get_blocks(req(MAX_BATCH_GET + 1))), "at most 10000 ids a call, got 10001");
    }

    #[test]
    fn commit_deleted_counts_stay_within_totals() {
        let ok = proto::CommitBlockRequest {
            block_id: 7,
            version: 2,
            size: 100,
            file_count: 3,
            del_size: 100,
            del_file_count: 3,
            request_id: None,
        };
        assert_eq!(commit_block(ok).unwrap(), ok);
        assert_eq!(
            refused(commit_block(proto::CommitBlockRequest { del_size: 101, ..ok })),
            "deleted size/files (101/3) exceed size/files (100/3)"
        );
        assert_eq!(
            refused(commit_block(proto::CommitBlockRequest { del_file_count: 4, ..ok })),
            "deleted size/files (100/4) exceed size/files (100/3)"
        );
    }

    #[test]
    fn list_limit_defaults_and_is_capped() {
        let req = |after, limit| proto::ListBlocksRequest { after, limit, stale: false };
        assert_eq!(list_blocks(&req(5, 0)).unwrap(), ListBlocks { after: 5, limit: DEFAULT_LIST as usize });
        assert_eq!(list_blocks(&req(u64::MAX, MAX_LIST)).unwrap().limit, MAX_LIST as usize);
        assert_eq!(refused(list_blocks(&req(0, MAX_LIST + 1))), "limit must be 1..=10000, got 10001");
    }

    #[test]
    fn echo_payload_is_capped() {
        let req = |n| proto::EchoRequest { payload: vec![7; n] };
        assert_eq!(echo(req(MAX_ECHO)).unwrap().len(), MAX_ECHO);
        assert_eq!(refused(echo(req(MAX_ECHO + 1))), "echo payload is limited to 65536 bytes");
    }
}

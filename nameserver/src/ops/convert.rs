//! Where the API's messages (tfs.v1) meet the disk format's (tfs.oplog.v1): the few messages both
//! have, field for field, are converted here and nowhere else. The API never names a disk message,
//! so a change of the API cannot change what is logged.

use crate::oplog::format;
use crate::proto;
use crate::state::Task;
use crate::state::dedup::RequestId;

/// A client's request id, as logged in its mutation's record.
pub fn request_id(r: RequestId) -> format::RequestId {
    format::RequestId { client: r.client, seq: r.seq }
}

/// A task's result as a dataserver reported it, as logged.
pub fn task_done(d: &proto::TaskDone) -> format::TaskDone {
    format::TaskDone { task_id: d.task_id, success: d.success, epoch: d.epoch, size: d.size, file_count: d.file_count }
}

/// A task as handed to a dataserver.
pub fn task(t: &Task) -> proto::TaskCreate {
    proto::TaskCreate {
        task_id: t.id,
        kind: task_kind(t.kind) as i32,
        block_id: t.block_id,
        source: t.source,
        target: t.target,
        epoch: t.epoch.get(),
        version: t.version,
    }
}

fn task_kind(k: format::TaskKind) -> proto::TaskKind {
    match k {
        format::TaskKind::Unspecified => proto::TaskKind::Unspecified,
        format::TaskKind::Replicate => proto::TaskKind::Replicate,
        format::TaskKind::Compact => proto::TaskKind::Compact,
        format::TaskKind::Delete => proto::TaskKind::Delete,
        format::TaskKind::Move => proto::TaskKind::Move,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The API's copies encode exactly as the records do: the bytes on the wire did not change
    /// when the API stopped importing the disk format.
    #[test]
    fn the_api_copies_encode_like_the_records() {
        let t = Task {
            id: 9,
            kind: format::TaskKind::Move,
            block_id: 100,
            source: 1,
            target: 2,
            epoch: crate::epoch::Epoch(3),
            version: 4,
        };
        assert_eq!(task(&t).encode_to_vec(), t.to_record().encode_to_vec());
        let d = proto::TaskDone { task_id: 9, success: true, epoch: 3, size: Some(7), file_count: Some(1) };
        assert_eq!(task_done(&d).encode_to_vec(), d.encode_to_vec());
        let r = RequestId { client: 5, seq: 6 };
        assert_eq!(request_id(r).encode_to_vec(), proto::RequestId { client: 5, seq: 6 }.encode_to_vec());
        for k in 0..=4 {
            let k = format::TaskKind::try_from(k).unwrap();
            assert_eq!(task_kind(k) as i32, k as i32);
        }
    }
}

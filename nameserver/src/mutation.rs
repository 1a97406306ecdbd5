//! The typed form of an oplog record's payload: one variant per [`RecordType`].

use bytes::Bytes;
use prost::Message;

use crate::oplog::RecordType;
use crate::oplog::format;

#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    EpochStart(format::EpochStart),
    BlockCreate(format::BlockCreate),
    BlockCommit(format::BlockCommit),
    BlockRemove(format::BlockRemove),
    DataserverJoin(format::DataserverJoin),
    DataserverLeave(format::DataserverLeave),
    ReplicaAdd(format::ReplicaAdd),
    TaskCreate(format::TaskCreate),
    TaskDone(format::TaskDone),
}

impl Mutation {
    pub fn rtype(&self) -> RecordType {
        match self {
            Mutation::EpochStart(_) => RecordType::EpochStart,
            Mutation::BlockCreate(_) => RecordType::BlockCreate,
            Mutation::BlockCommit(_) => RecordType::BlockCommit,
            Mutation::BlockRemove(_) => RecordType::BlockRemove,
            Mutation::DataserverJoin(_) => RecordType::DataserverJoin,
            Mutation::DataserverLeave(_) => RecordType::DataserverLeave,
            Mutation::ReplicaAdd(_) => RecordType::ReplicaAdd,
            Mutation::TaskCreate(_) => RecordType::TaskCreate,
            Mutation::TaskDone(_) => RecordType::TaskDone,
        }
    }

    pub fn encode_payload(&self, buf: &mut Vec<u8>) {
        // Encoding into a Vec cannot fail: it grows as needed.
        let r = match self {
            Mutation::EpochStart(m) => m.encode(buf),
            Mutation::BlockCreate(m) => m.encode(buf),
            Mutation::BlockCommit(m) => m.encode(buf),
            Mutation::BlockRemove(m) => m.encode(buf),
            Mutation::DataserverJoin(m) => m.encode(buf),
            Mutation::DataserverLeave(m) => m.encode(buf),
            Mutation::ReplicaAdd(m) => m.encode(buf),
            Mutation::TaskCreate(m) => m.encode(buf),
            Mutation::TaskDone(m) => m.encode(buf),
        };
        r.expect("encoding into a Vec cannot run out of space");
    }

    pub fn decode(rtype: RecordType, payload: Bytes) -> Result<Self, prost::DecodeError> {
        Ok(match rtype {
            RecordType::EpochStart => Mutation::EpochStart(Message::decode(payload)?),
            RecordType::BlockCreate => Mutation::BlockCreate(Message::decode(payload)?),
            RecordType::BlockCommit => Mutation::BlockCommit(Message::decode(payload)?),
            RecordType::BlockRemove => Mutation::BlockRemove(Message::decode(payload)?),
            RecordType::DataserverJoin => Mutation::DataserverJoin(Message::decode(payload)?),
            RecordType::DataserverLeave => Mutation::DataserverLeave(Message::decode(payload)?),
            RecordType::ReplicaAdd => Mutation::ReplicaAdd(Message::decode(payload)?),
            RecordType::TaskCreate => Mutation::TaskCreate(Message::decode(payload)?),
            RecordType::TaskDone => Mutation::TaskDone(Message::decode(payload)?),
        })
    }
}

//! Generated protobuf and gRPC types of the API (nameserver/proto/tfs/v1: the client, dataserver,
//! admin and backup services, and the replication stream's control messages). The disk format's
//! messages are not here: [`crate::oplog::format`].
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("tfs.v1");

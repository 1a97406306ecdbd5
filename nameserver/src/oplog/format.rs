//! The disk format's messages, generated from nameserver/proto/tfs/oplog/v1/oplog.proto (package
//! `tfs.oplog.v1`): the payloads of oplog records and the chunks of checkpoints (and so of the
//! snapshots shipped to slaves). Apart from the API's [`crate::proto`], which never names them, so
//! an API change cannot change what is on disk. Field numbers are the format: never reuse one.
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("tfs.oplog.v1");

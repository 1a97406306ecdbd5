//! Generated protobuf and gRPC types (nameserver/proto/tfs/v1).
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("tfs.v1");

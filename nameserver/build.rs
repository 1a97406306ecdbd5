// Generates the API's gRPC types (tfs.v1: nameserver.proto, replication.proto) and the disk
// format's (tfs.oplog.v1: oplog.proto). protoc comes vendored, so a fresh machine builds without
// installing protobuf-compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    tonic_prost_build::configure().compile_protos(
        &["proto/tfs/v1/nameserver.proto", "proto/tfs/v1/replication.proto", "proto/tfs/oplog/v1/oplog.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

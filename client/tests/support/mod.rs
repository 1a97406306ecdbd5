//! What the client's process tests share besides the nameserver's harness (included by path).

/// Builds this checkout's nameserver binary where the harness looks for it (client/build.rs):
/// cargo builds a package's binaries for that package's tests only.
pub fn binaries() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = std::path::Path::new(crate::common::NS).parent().unwrap();
        let profile = match dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev",
            p => p,
        };
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "tfs-nameserver", "--bins", "--profile", profile])
            .status()
            .expect("run cargo build")
            .success();
        assert!(ok, "cannot build the nameserver binaries");
    });
}

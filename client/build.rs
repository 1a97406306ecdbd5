// The process tests (tests/) start real nameservers with the harness of nameserver/tests/common,
// which finds its binaries by `CARGO_BIN_EXE_*`. Cargo sets those only for a package's own
// binaries, so name them here: the workspace's target directory, this profile (the tests build
// them there first, tests/common.rs).
fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let profile_dir = out.ancestors().nth(3).expect("OUT_DIR under the target directory");
    for bin in ["tfs-nameserver", "tfsctl"] {
        println!("cargo:rustc-env=CARGO_BIN_EXE_{bin}={}", profile_dir.join(bin).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}

//! tfsctl, the nameserver's command-line client, admin tool, load generator, history checker and
//! dataserver simulator, as a library: the binary (main.rs) parses the command line and calls
//! these modules; the e2e harness reads the files tfsctl writes with [`record`] and [`ops`].

pub mod backup;
pub mod bench;
pub mod conn;
pub mod devcerts;
pub mod history;
pub mod linearize;
pub mod ops;
pub mod probe;
pub mod record;
pub mod show;
pub mod sim;
pub mod tls;
pub mod verify;

pub use conn::{connect, connect_to, endpoint, status_error};

//! The operation log: every mutation of the state is one record, appended to segment files and made
//! durable by group commit. See docs/PROTOCOL.md for the byte layout.

pub mod feed;
pub mod format;
pub mod log;
pub mod record;
pub mod segment;

pub use log::{Oplog, OplogOptions, Recovered};
pub use record::{HEADER_LEN, Header, MAX_PAYLOAD, Record, RecordError, RecordType};

//! The state as the API shows it. Here, not in state/: the state machine knows nothing of the API's
//! messages; below server/, since the rules (ops) answer with blocks too (a retry's first outcome).

use crate::proto;
use crate::state::{BlockMeta, State};

/// Block `id` (`b`) as the API shows it, with its dataservers' addresses.
pub fn block(s: &State, id: u64, b: &BlockMeta) -> proto::Block {
    proto::Block {
        id,
        version: b.version,
        size: b.size,
        file_count: b.file_count,
        del_size: b.del_size,
        del_file_count: b.del_file_count,
        dataservers: b.replicas().to_vec(),
        addrs: b.replicas().iter().map(|d| s.dataservers.get(d).map(|d| d.addr.clone()).unwrap_or_default()).collect(),
    }
}

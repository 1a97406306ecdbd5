//! `verify --sole-writer`: the blocks on the server that no acknowledged create returned. When the
//! record's writers were the cluster's only writers and ran to completion, each one is a leak: a
//! create applied twice (a retry not known as one) or applied with its outcome lost for good.

use std::collections::BTreeMap;

use anyhow::Result;
use tfs_nameserver::proto::{self, client_client::ClientClient};

use super::{Expect, note};

/// Blocks listed per call.
const PAGE: u32 = 5000;

/// How many blocks the server holds that `expect` has no acknowledged create for.
pub(super) async fn count(addr: &str, expect: &BTreeMap<u64, Expect>, problems: &mut Vec<String>) -> Result<u64> {
    let mut c = ClientClient::new(crate::connect(addr).await?);
    let (mut after, mut n) = (0u64, 0u64);
    loop {
        let r = c
            .list_blocks(proto::ListBlocksRequest { after, limit: PAGE, stale: false })
            .await
            .map_err(|s| anyhow::anyhow!("listing the blocks: {}: {}", s.code(), s.message()))?
            .into_inner();
        for b in &r.blocks {
            if !expect.get(&b.id).is_some_and(|e| e.created) {
                n += 1;
                note(problems, || format!("block {}: on the server, but no acknowledged create returned it", b.id));
            }
        }
        match (r.more, r.blocks.last()) {
            (true, Some(last)) => after = last.id,
            _ => return Ok(n),
        }
    }
}

//! `tfsctl verify`: every acknowledged mutation in a record must be visible, and no block id may
//! have been acknowledged as created twice.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;
use tfs_nameserver::proto::{self, client_client::ClientClient};

use crate::record::{self, Kind};

#[derive(Debug, Default, Clone, Copy)]
struct Expect {
    created: bool,
    removed: bool,
    version: u32,
}

pub async fn run(addr: &str, path: &Path, json: bool) -> Result<i32> {
    let acks = record::read(path)?;
    let mut problems: Vec<String> = Vec::new();
    let mut expect: BTreeMap<u64, Expect> = BTreeMap::new();
    let mut created_twice = 0u64;
    let mut epochs: HashMap<u64, u64> = HashMap::new();
    for a in &acks {
        *epochs.entry(a.epoch).or_default() += 1;
        let e = expect.entry(a.block).or_default();
        match a.kind {
            Kind::Create => {
                if e.created {
                    created_twice += 1;
                    if problems.len() < 20 {
                        problems.push(format!("block id {} was acknowledged as created twice", a.block));
                    }
                }
                e.created = true;
            }
            Kind::Commit { version } => e.version = e.version.max(version),
            Kind::Remove => e.removed = true,
        }
    }
    let mut c = ClientClient::new(crate::connect(addr).await?);
    let ids: Vec<u64> = expect.keys().copied().collect();
    let mut lost = 0u64;
    let mut stale = 0u64;
    let mut resurrected = 0u64;
    for chunk in ids.chunks(5000) {
        let r = c
            .batch_get_blocks(proto::BatchGetBlocksRequest { block_ids: chunk.to_vec() })
            .await
            .map_err(|s| anyhow::anyhow!("reading blocks back: {}: {}", s.code(), s.message()))?
            .into_inner();
        let found: HashMap<u64, &proto::Block> = r.blocks.iter().map(|b| (b.id, b)).collect();
        for id in chunk {
            let e = expect[id];
            match (found.get(id), e.removed) {
                (None, false) => {
                    lost += 1;
                    if problems.len() < 20 {
                        problems.push(format!("block {id}: acknowledged, but missing"));
                    }
                }
                (Some(_), true) => {
                    resurrected += 1;
                    if problems.len() < 20 {
                        problems.push(format!("block {id}: removal was acknowledged, but it exists"));
                    }
                }
                (Some(b), false) if b.version < e.version => {
                    stale += 1;
                    if problems.len() < 20 {
                        problems.push(format!("block {id}: version {} acknowledged, {} found", e.version, b.version));
                    }
                }
                _ => {}
            }
        }
    }
    let ok = lost == 0 && stale == 0 && resurrected == 0 && created_twice == 0;
    let mut by_epoch: Vec<_> = epochs.into_iter().collect();
    by_epoch.sort();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": ok, "acknowledged": acks.len(), "blocks": ids.len(), "lost": lost, "stale": stale,
                "resurrected": resurrected, "duplicate_ids": created_twice,
                "acks_by_epoch": by_epoch.iter().map(|(e, n)| serde_json::json!({"epoch": e, "acks": n})).collect::<Vec<_>>(),
            })
        );
    } else {
        let epochs: Vec<String> = by_epoch.iter().map(|(e, n)| format!("{e}:{n}")).collect();
        println!(
            "verify: {} acknowledged mutations on {} blocks (by epoch {}): lost={lost} stale={stale} resurrected={resurrected} duplicate_ids={created_twice} => {}",
            acks.len(),
            ids.len(),
            epochs.join(","),
            if ok { "OK" } else { "FAILED" }
        );
        for p in &problems {
            println!("  {p}");
        }
    }
    Ok(if ok { 0 } else { 1 })
}

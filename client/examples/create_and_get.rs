//! Creates blocks from many tasks through one pipelined session, then reads them back.
//!
//! A nameserver master with dataservers must be running, e.g. on a development machine:
//!
//! ```text
//! tfs-nameserver --data-dir /tmp/ns --node a --standalone &
//! tfsctl sim-dataservers --count 3 &
//! cargo run -p tfs-client --example create_and_get -- 127.0.0.1:8100 1000
//! ```

use std::time::Instant;

use tfs_client::{Client, TlsOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8100".into());
    let count: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1000);

    let client = Client::connect(&addr, TlsOptions::plain()).await?;
    let session = client.session();
    let t = Instant::now();
    // Each create is its own task; the session carries them all on one stream.
    let creates: Vec<_> = (0..count)
        .map(|_| {
            let s = session.clone();
            tokio::spawn(async move { s.create().await })
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for c in creates {
        let reply = c.await??;
        ids.push(reply.block.ok_or("a create reply without its block")?.id);
    }
    println!("created {count} blocks in {:?} (epoch {})", t.elapsed(), client.epoch());

    for &id in ids.iter().take(3) {
        let b = session.get(id).await?.block.ok_or("a get reply without its block")?;
        println!("block {} on dataservers {:?} at {:?}", b.id, b.dataservers, b.addrs);
    }
    session.close();
    Ok(())
}

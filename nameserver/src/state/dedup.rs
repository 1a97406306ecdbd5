//! The dedup window of client request ids: which recent mutations carried which id, and their
//! outcome, so that a retried create, commit or remove is answered with the first outcome instead
//! of being applied twice (ops/mod.rs holds the rule; docs/PROTOCOL.md "Idempotent requests").
//!
//! It is part of the state: filled only by applying records that carry an id (state `apply`), so
//! a slave, a restarted node and a restore from the archive rebuild exactly the master's window;
//! a checkpoint carries it ([`DedupView`]).
//!
//! Bounds (deterministic: every node evicts the same entries at the same record):
//! - [`WINDOW`] entries in all, the oldest (by record) evicted first; no bound per client, so a
//!   client is never cut below what it has in flight, however many that is;
//! - each client remembers the highest request seq evicted from the window (its *floor*): a request
//!   of that client at or below its floor and no longer in the window may have been applied, and
//!   is refused as "outcome unknown" rather than applied again;
//! - a client with nothing left in the window keeps its floor among the [`FORGOTTEN_CLIENTS`]
//!   clients so idle most recently; past that the oldest is forgotten, and a retry of it then can
//!   no longer be told from a new request (documented in docs/CLIENT.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Entries in the window at most: at 50,000 writes/s with ids, about 10 s of them.
pub const WINDOW: usize = 1 << 19;
/// Clients with nothing in the window whose floor is still remembered.
pub const FORGOTTEN_CLIENTS: usize = 1 << 16;
/// Entries of one shared chunk: a snapshot shares the chunks, the writer copies at most the last.
const CHUNK: usize = 4096;

/// A client's id for one mutation (oplog.proto `RequestId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    pub client: u64,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create = 1,
    Commit = 2,
    Remove = 3,
}

impl Kind {
    fn from_u32(k: u32) -> Option<Kind> {
        [Kind::Create, Kind::Commit, Kind::Remove].into_iter().find(|x| *x as u32 == k)
    }
}

/// What a request did: enough to answer its retry and to tell a retry from another request
/// reusing the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub kind: Kind,
    pub block_id: u64,
    pub record_seq: u64,
    /// The request's fingerprint ([`create_body`], [`commit_body`]; 0 for a remove).
    pub body: u32,
}

/// A create's fingerprint: its replica count. (A remove's is 0: its block id is compared whole.)
pub fn create_body(replicas: usize) -> u32 {
    replicas as u32
}

/// A commit's fingerprint: the crc32c of its version, sizes and counts.
pub fn commit_body(version: u32, size: u64, file_count: u32, del_size: u64, del_file_count: u32) -> u32 {
    [version.into(), size, file_count.into(), del_size, u64::from(del_file_count)]
        .iter()
        .fold(0, |crc, f| crc32c::crc32c_append(crc, &f.to_le_bytes()))
}

/// The id and outcome of a record carrying a request id (the fingerprint computed from the record,
/// as [`ops`](crate::ops) computes it from the request).
pub fn of_record(record_seq: u64, m: &crate::mutation::Mutation) -> Option<(RequestId, Outcome)> {
    use crate::mutation::Mutation as M;
    let (r, kind, block_id, body) = match m {
        M::BlockCreate(c) => (c.request?, Kind::Create, c.block_id, create_body(c.dataservers.len())),
        M::BlockCommit(c) => (
            c.request?,
            Kind::Commit,
            c.block_id,
            commit_body(c.version, c.size, c.file_count, c.del_size, c.del_file_count),
        ),
        M::BlockRemove(c) => (c.request?, Kind::Remove, c.block_id, 0),
        _ => return None,
    };
    Some((RequestId { client: r.client, seq: r.seq }, Outcome { kind, block_id, record_seq, body }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: RequestId,
    pub outcome: Outcome,
}

/// What the window says of a request about to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Not seen (or no id): apply it.
    New,
    /// Applied already, with this outcome: answer it.
    Done(Outcome),
    /// The id was used by a different request (another kind, block or body): refuse.
    OtherRequest(Outcome),
    /// Evicted from the window or never applied, which cannot be told: refuse as unknown.
    Beyond { floor: u64 },
}

#[derive(Debug, Clone, Default)]
struct Client {
    live: u32,
    floor: u64,
    forgotten_at: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Dedup {
    /// Entries in record order; `chunks[0][0]` is at absolute position `base`.
    chunks: VecDeque<Arc<Vec<Entry>>>,
    base: u64,
    /// Entries before this absolute position were evicted.
    head: u64,
    end: u64,
    /// Id → absolute position of its entry (derived from the entries).
    index: HashMap<RequestId, u64>,
    clients: HashMap<u64, Client>,
    /// Clients with nothing in the window, by when that happened (oldest first).
    forgotten: BTreeMap<u64, u64>,
    next_forget: u64,
}

/// The window as a snapshot takes it: the chunks shared (O(chunks)), the clients' floors copied.
#[derive(Debug, Clone, Default)]
pub struct DedupView {
    chunks: Vec<Arc<Vec<Entry>>>,
    skip: usize,
    end: usize,
    /// (client, floor, rank among the forgotten, 1-based, or 0).
    pub clients: Vec<(u64, u64, u64)>,
}

impl Dedup {
    pub fn len(&self) -> usize {
        (self.end - self.head) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.head
    }

    fn at(&self, pos: u64) -> &Entry {
        let i = (pos - self.base) as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// What to do with request `id` of `kind` on `block_id` (0 for a create) with fingerprint `body`.
    pub fn lookup(&self, id: RequestId, kind: Kind, block_id: u64, body: u32) -> Lookup {
        if let Some(&pos) = self.index.get(&id) {
            let o = self.at(pos).outcome;
            let same_block = kind == Kind::Create || o.block_id == block_id;
            return if o.kind == kind && same_block && o.body == body {
                Lookup::Done(o)
            } else {
                Lookup::OtherRequest(o)
            };
        }
        match self.clients.get(&id.client) {
            Some(c) if id.seq <= c.floor => Lookup::Beyond { floor: c.floor },
            _ => Lookup::New,
        }
    }

    /// Records what request `id` did (state `apply`, for a record carrying an id), then evicts
    /// past [`WINDOW`].
    pub fn insert(&mut self, id: RequestId, outcome: Outcome) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(Entry { id, outcome }),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(Entry { id, outcome });
                self.chunks.push_back(Arc::new(c));
            }
        }
        let pos = self.end;
        self.end += 1;
        // A record repeating an id (never logged by a master: ops looks first) replaces the entry.
        if self.index.insert(id, pos).is_none() {
            let c = self.clients.entry(id.client).or_default();
            c.live += 1;
            if let Some(at) = c.forgotten_at.take() {
                self.forgotten.remove(&at);
            }
        }
        while self.len() > WINDOW {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let pos = self.head;
        let e = *self.at(pos);
        self.head += 1;
        if self.head - self.base == CHUNK as u64 {
            self.chunks.pop_front();
            self.base += CHUNK as u64;
        }
        if self.index.get(&e.id) != Some(&pos) {
            return; // replaced by a later entry of the same id
        }
        self.index.remove(&e.id);
        let c = self.clients.get_mut(&e.id.client).expect("an indexed entry has its client");
        c.live -= 1;
        c.floor = c.floor.max(e.id.seq);
        if c.live == 0 {
            c.forgotten_at = Some(self.next_forget);
            self.forgotten.insert(self.next_forget, e.id.client);
            self.next_forget += 1;
            while self.forgotten.len() > FORGOTTEN_CLIENTS {
                let (_, client) = self.forgotten.pop_first().expect("non-empty");
                self.clients.remove(&client);
            }
        }
    }

    /// The window for a snapshot: O(chunks + clients with a floor), no entry copied.
    pub fn view(&self) -> DedupView {
        let mut clients: Vec<(u64, u64, u64)> = Vec::new();
        let rank: HashMap<u64, u64> = self.forgotten.values().enumerate().map(|(i, c)| (*c, i as u64 + 1)).collect();
        for (&id, c) in &self.clients {
            if c.floor > 0 || c.forgotten_at.is_some() {
                clients.push((id, c.floor, rank.get(&id).copied().unwrap_or(0)));
            }
        }
        clients.sort_unstable();
        let skip = (self.head - self.base) as usize;
        DedupView { chunks: self.chunks.iter().cloned().collect(), skip, end: skip + self.len(), clients }
    }

    /// The window a snapshot holds: the clients' floors, then its entries replayed in order.
    pub fn from_view(v: &DedupView) -> Dedup {
        let mut d = Dedup::default();
        let mut forgotten: Vec<(u64, u64)> = Vec::new();
        for &(client, floor, rank) in &v.clients {
            d.clients.insert(client, Client { live: 0, floor, forgotten_at: None });
            if rank > 0 {
                forgotten.push((rank, client));
            }
        }
        forgotten.sort_unstable();
        for (_, client) in forgotten {
            d.clients.get_mut(&client).expect("inserted").forgotten_at = Some(d.next_forget);
            d.forgotten.insert(d.next_forget, client);
            d.next_forget += 1;
        }
        for e in v.entries() {
            d.insert(e.id, e.outcome);
        }
        d
    }
}

impl DedupView {
    pub fn len(&self) -> usize {
        self.end - self.skip
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.chunks.iter().flat_map(|c| c.iter()).skip(self.skip).take(self.len())
    }

    pub fn push(&mut self, e: Entry) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(e),
            _ => self.chunks.push(Arc::new(vec![e])),
        }
        self.end += 1;
    }

    /// An entry of a checkpoint (`SnapshotRequest`); `None` for an unknown kind.
    pub fn entry_of(r: &crate::oplog::format::SnapshotRequest) -> Option<Entry> {
        let kind = Kind::from_u32(r.kind)?;
        Some(Entry {
            id: RequestId { client: r.client, seq: r.seq },
            outcome: Outcome { kind, block_id: r.block_id, record_seq: r.record_seq, body: r.body },
        })
    }
}

impl Entry {
    pub fn to_record(&self) -> crate::oplog::format::SnapshotRequest {
        crate::oplog::format::SnapshotRequest {
            client: self.id.client,
            seq: self.id.seq,
            kind: self.outcome.kind as u32,
            block_id: self.outcome.block_id,
            record_seq: self.outcome.record_seq,
            body: self.outcome.body,
        }
    }
}

#[cfg(test)]
mod tests;

//! Criterion benchmarks of the core: record codec, state apply, oplog append with and without
//! fdatasync, checkpoint encode/decode.

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tfs_nameserver::checkpoint::Snapshot;
use tfs_nameserver::epoch::Epoch;
use tfs_nameserver::mutation::Mutation;
use tfs_nameserver::oplog::format;
use tfs_nameserver::oplog::{Oplog, OplogOptions, RecordType, record};
use tfs_nameserver::state::State;

fn create(id: u64) -> Mutation {
    Mutation::BlockCreate(format::BlockCreate { block_id: id, dataservers: vec![1, 2], request: None })
}

fn encoded(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut payload = Vec::new();
    for seq in 1..=n {
        payload.clear();
        create(seq).encode_payload(&mut payload);
        record::encode(&mut out, RecordType::BlockCreate, Epoch(1), seq, 1_700_000_000_000, &payload);
    }
    out
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("encode_1000", |b| b.iter(|| encoded(1000)));
    let data = Bytes::from(encoded(1000));
    g.bench_function("decode_1000", |b| {
        b.iter(|| {
            let mut off = 0;
            while off < data.len() {
                let (r, n) = record::decode(&data.slice(off..)).unwrap();
                std::hint::black_box(Mutation::decode(r.header.rtype, r.payload).unwrap());
                off += n;
            }
        })
    });
    g.finish();
}

/// Replay speed: decode + apply, what recovery and a catching-up slave do.
fn replay(c: &mut Criterion) {
    let data = Bytes::from(encoded(100_000));
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(10);
    g.bench_function("decode_apply_100k", |b| {
        b.iter_batched(
            || {
                let mut s = State::new();
                let j = Mutation::DataserverJoin(format::DataserverJoin {
                    id: 1,
                    addr: "a:1".into(),
                    capacity: 1,
                    used: 0,
                    lease_id: 1,
                });
                s.apply(
                    &record::Header {
                        rtype: RecordType::DataserverJoin,
                        epoch: Epoch(1),
                        seq: 1,
                        time_ms: 0,
                        len: 0,
                        crc: 0,
                    },
                    &j,
                )
                .unwrap();
                s.applied_seq = 0;
                s
            },
            |mut s| {
                let mut off = 0;
                while off < data.len() {
                    let (r, n) = record::decode(&data.slice(off..)).unwrap();
                    let m = Mutation::decode(r.header.rtype, r.payload).unwrap();
                    s.apply(&r.header, &m).unwrap();
                    off += n;
                }
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn oplog(c: &mut Criterion) {
    let mut g = c.benchmark_group("oplog");
    let batch = encoded(256);
    for fsync in [false, true] {
        g.throughput(Throughput::Elements(256));
        g.bench_function(if fsync { "append_256_fdatasync" } else { "append_256_nosync" }, |b| {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) =
                Oplog::open(dir.path(), OplogOptions { segment_bytes: 256 << 20, fsync }, 0, |_| Ok(())).unwrap();
            let mut seq = 0u64;
            b.iter(|| {
                // Re-stamping seqs is not needed for the cost; the log trusts the caller's range.
                log.append(&batch, seq + 1, seq + 256, Epoch(1)).unwrap();
                log.sync().unwrap();
                seq += 256;
            })
        });
    }
    g.finish();
}

fn checkpoint(c: &mut Criterion) {
    let blocks = (1..=100_000u64).map(|id| (id, tfs_nameserver::state::BlockMeta::new(&[1, 2]).unwrap())).collect();
    let s = Snapshot { blocks, ..Default::default() }.into_state().unwrap();
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("snapshot_encode_100k", |b| {
        b.iter(|| {
            let mut buf = Vec::new();
            Snapshot::of(&s).write_to(&mut buf).unwrap();
            buf
        })
    });
    let mut buf = Vec::new();
    Snapshot::of(&s).write_to(&mut buf).unwrap();
    g.bench_function("snapshot_decode_100k", |b| {
        b.iter(|| Snapshot::read_from(&mut &buf[..]).unwrap().into_state().unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec, replay, oplog, checkpoint);
criterion_main!(benches);

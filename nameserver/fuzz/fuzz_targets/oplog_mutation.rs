//! A record payload without its crc in the way: `Mutation::decode` for the type in the first byte.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tfs_nameserver::oplog::RecordType;

fuzz_target!(|data: &[u8]| {
    let Some((&t, payload)) = data.split_first() else { return };
    let Some(rtype) = RecordType::from_u8(1 + t % 9) else { unreachable!("types are 1..=9") };
    tfs_fuzz::check_mutation(rtype, Bytes::copy_from_slice(payload));
});

//! A whole segment as recovery reads it: `segment::scan`, then `is_torn_tail` on where it stopped.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tfs_nameserver::oplog::segment::{self, ScanEnd};

fn check(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let mut next = 0;
    let end = segment::scan(&buf, |r, offset| {
        assert_eq!(offset, next);
        next += r.encoded_len();
        tfs_fuzz::check_mutation(r.header.rtype, r.payload);
        Ok(())
    })
    .expect("this visitor never stops the scan");
    match end {
        ScanEnd::Clean => assert_eq!(next, data.len()),
        ScanEnd::Bad { offset, error } => {
            assert_eq!(offset, next);
            assert!(offset < data.len());
            let torn = segment::is_torn_tail(data, offset, &error);
            assert!(torn || !error.is_incomplete());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    tfs_fuzz::fix_record_crcs(&mut fixed);
    check(&fixed);
});

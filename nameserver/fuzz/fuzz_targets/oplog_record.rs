//! One oplog record: `record::decode_header`, `record::decode`, then its payload as a `Mutation`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tfs_nameserver::oplog::record::{self, HEADER_LEN};

fn check(data: &[u8]) {
    let header = record::decode_header(data);
    match record::decode(&Bytes::copy_from_slice(data)) {
        Ok((r, n)) => {
            assert_eq!(header, Ok(r.header));
            assert_eq!(n, HEADER_LEN + r.header.len as usize);
            assert!(n <= data.len());
            assert_eq!(r.encoded_len(), n);
            assert_eq!(&r.payload[..], &data[HEADER_LEN..n]);
            // Written again (flags are reserved: written as 0, so the crc may differ), it reads back.
            let mut again = Vec::new();
            r.encode_into(&mut again);
            let (back, m) = record::decode(&Bytes::from(again)).expect("a re-encoded record decodes");
            assert_eq!(m, n);
            assert_eq!(back.payload, r.payload);
            assert_eq!(record::Header { crc: r.header.crc, ..back.header }, r.header);
            tfs_fuzz::check_mutation(r.header.rtype, r.payload);
        }
        Err(e) => {
            // decode fails exactly where decode_header does, or after it (length, crc).
            if let Err(h) = header {
                assert_eq!(e, h);
            }
            if let record::RecordError::Incomplete { need, have } = e {
                assert!(need > have && have == data.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    tfs_fuzz::fix_record_crcs(&mut fixed);
    check(&fixed);
});

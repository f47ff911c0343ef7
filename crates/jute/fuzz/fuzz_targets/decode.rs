//! Arbitrary bytes through every generated decoder: no panic, no
//! unbounded allocation, and whatever decodes re-encodes stably.
#![no_main]

mod records {
    #![allow(dead_code)]
    include!(concat!(env!("OUT_DIR"), "/zookeeper.rs"));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    records::fuzz_decode_all(data);
});

//! Generates the ZooKeeper record types from `jute-schema/zookeeper.jute`.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let schema_path = manifest.join("../../jute-schema/zookeeper.jute");
    println!("cargo:rerun-if-changed={}", schema_path.display());
    let src = std::fs::read_to_string(&schema_path)
        .unwrap_or_else(|e| panic!("{}: {e}", schema_path.display()));
    let schema = janus_jute::schema::parse(&src)
        .unwrap_or_else(|e| panic!("{}: {e}", schema_path.display()));
    let code = janus_jute::codegen::generate(&schema);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("zookeeper.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

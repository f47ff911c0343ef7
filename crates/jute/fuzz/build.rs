//! The same generated records Janus uses, from jute-schema/zookeeper.jute.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let schema_path = manifest.join("../../../jute-schema/zookeeper.jute");
    println!("cargo:rerun-if-changed={}", schema_path.display());
    let src = std::fs::read_to_string(&schema_path).expect("schema");
    let schema = janus_jute::schema::parse(&src).expect("parse");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("zookeeper.rs");
    std::fs::write(out, janus_jute::codegen::generate(&schema)).expect("write");
}

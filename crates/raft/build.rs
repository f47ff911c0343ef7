fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto/janus/peer.proto");
    tonic_prost_build::configure()
        .compile_protos(&["../../proto/janus/peer.proto"], &["../../proto"])?;
    Ok(())
}

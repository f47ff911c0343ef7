// Generates etcd's v3 API (and gRPC health) from proto/etcd: prost types
// and tonic services, plus proto3 JSON (etcd's gateway) for the API types.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "../../proto/etcd/mvccpb/kv.proto",
        "../../proto/etcd/authpb/auth.proto",
        "../../proto/etcd/etcdserverpb/rpc.proto",
        "../../proto/etcd/v3lockpb/v3lock.proto",
        "../../proto/etcd/v3electionpb/v3election.proto",
        "../../proto/etcd/grpc_health/health.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("etcd_descriptors.bin");
    tonic_prost_build::configure()
        .build_client(true)
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["../../proto/etcd"])?;
    // etcd's gateway marshals with the proto field names (OrigName).
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".etcdserverpb",
            ".mvccpb",
            ".authpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    Ok(())
}

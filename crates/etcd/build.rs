// Generates etcd's v3 API (and gRPC health) from proto/etcd.
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
    tonic_prost_build::configure().build_client(true).compile_protos(&protos, &["../../proto/etcd"])?;
    Ok(())
}

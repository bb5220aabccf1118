//! Compiles the harness's MLSClient service definition, shared with the Go
//! runner in interop/proto, into Rust server stubs.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("../proto");
    let proto = dir.join("mls_client.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [dir])?;
    tonic_prost_build::configure()
        .build_client(false)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}

//! Compiles the .proto contracts with protox (pure Rust, no system `protoc`)
//! and generates prost messages + tonic clients and servers.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "switchboard/media/v1/media.proto",
    "switchboard/admin/v1/common.proto",
    "switchboard/admin/v1/media_admin.proto",
    "switchboard/admin/v1/signaling_admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let fds = protox::Compiler::new(["proto"])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTOS)?
        .file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The encoded descriptor set feeds gRPC server reflection.
    std::fs::write(
        out_dir.join("switchboard_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

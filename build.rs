//! Compiles `proto/` into Rust and writes the file descriptor set used by
//! gRPC server reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build 0.14 prints no rerun lines of its own.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");

    // A system protoc wins when set; otherwise use the vendored one so that a
    // fresh machine needs nothing installed.
    if env::var_os("PROTOC").is_none() {
        unsafe_set_protoc(protoc_bin_vendored::protoc_bin_path()?);
    }
    // The well-known types (Timestamp, FieldMask) ship with the vendored protoc.
    let well_known = protoc_bin_vendored::include_path()?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protos = [
        PathBuf::from("proto/centralino/v1/common.proto"),
        PathBuf::from("proto/centralino/v1/orders.proto"),
        PathBuf::from("proto/centralino/v1/numbers.proto"),
        PathBuf::from("proto/centralino/v1/calls.proto"),
        PathBuf::from("proto/centralino/v1/notifications.proto"),
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("centralino_descriptor.bin"))
        .compile_protos(&protos, &[PathBuf::from("proto"), well_known])?;
    Ok(())
}

fn unsafe_set_protoc(protoc: PathBuf) {
    // `set_var` is unsafe in edition 2024 because other threads may read the
    // environment; a build script has no other threads at this point.
    #[allow(unsafe_code)]
    unsafe {
        env::set_var("PROTOC", protoc);
    }
}

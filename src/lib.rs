//! Centralino API v1: the Rust code generated from `proto/centralino/v1`, and
//! the encoded file descriptor set for gRPC server reflection.
//!
//! This crate holds generated code only; the server lives in `server/` and the
//! typed client in `client-sdk/`.

/// `centralino.v1`: messages, enums, clients and servers.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, clippy::restriction)]
    tonic::include_proto!("centralino.v1");
}

/// Encoded `FileDescriptorSet` of every proto in `proto/`, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("centralino_descriptor");

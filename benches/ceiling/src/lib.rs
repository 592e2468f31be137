//! Shared pieces of the ceiling tools: argument parsing, TLS configurations from the dev
//! certificates, Kafka frames built with kafka-protocol, /proc readings, and a counting
//! allocator for the micro-experiments.

pub mod alloc;
pub mod args;
pub mod procfs;
pub mod proto;
pub mod tls;

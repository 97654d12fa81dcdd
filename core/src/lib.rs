//! The pure part of reuse: no system calls, no allocation, no global state.
//!
//! The preloaded library (`libreuse.so`) and the `reuse` command both build on these
//! functions, so a flag the command accepts is exactly what the library accepts, and the
//! diagnosis after a failed bind reads the same as `reuse doctor`.
#![cfg_attr(not(test), no_std)]
// What could abort a host, or a diagnosis in it: never outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used
    )
)]

pub mod activation;
pub mod config;
pub mod decision;
pub mod endpoint;
pub mod hold_protocol;
pub mod in_use;
pub mod line;
pub mod ports;
pub mod proc_net;

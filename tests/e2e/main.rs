//! syncd's end-to-end tests: a real `rsync --daemon` on 127.0.0.1, the real `syncd-worker`
//! binary, real files. One test binary; the table of contents is below. Build the workspace
//! first (`cargo build --workspace`), then `cargo test -p syncd-tests`.

mod harness;

mod harness_selftest;

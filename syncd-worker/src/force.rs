//! `syncd sync --full --force`: the operator's word that the next whole-tree push may
//! delete past the deletion guard ([`crate::guard`]). The controller cannot pass a flag
//! along SIGUSR2, so `syncd sync` leaves `<state_dir>/force-full` (state directory: root
//! only) and then signals; the worker takes the file (removes it) when the SIGUSR2
//! arrives. A file left by an interrupted `sync` is taken by the next SIGUSR2 only, never
//! by an ordinary push.

use std::path::Path;

use anyhow::Context;

use crate::state_dir::StateDir;

/// Leave the request for the worker of `state_dir`.
pub fn request(state_dir: &Path) -> anyhow::Result<()> {
    let path = StateDir::at(state_dir).force_file();
    std::fs::write(&path, b"syncd sync --full --force\n").with_context(|| {
        format!(
            "failed to write {} (the request for a forced full push)",
            path.display()
        )
    })
}

/// Take the request, if there is one: true when it was there (it is gone now).
pub fn take(state_dir: &Path) -> bool {
    std::fs::remove_file(StateDir::at(state_dir).force_file()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_taken_once() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(!take(d.path()));
        request(d.path()).expect("request");
        assert!(take(d.path()));
        assert!(!take(d.path()));
    }
}

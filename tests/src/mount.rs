//! `LoopFs`: a small ext4 (or xfs, btrfs: `made_with`) file system in an image file (tempdir), mounted and unmounted
//! with `mount -o loop` like a data disk, for tests of a source whose file system goes
//! away. ext4 keeps its fsid (from its UUID) across mounts, as a real disk or an NFS
//! export does, so a remount is "the same source back".
//!
//! Needs root (tests run as root; CI does). Drop unmounts whatever is still mounted (lazily
//! if busy) and removes the image: no mount or loop device is left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopFs {
    dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
}

impl LoopFs {
    /// A fresh ext4 image of `mib` MiB.
    pub fn new(mib: u32) -> LoopFs {
        LoopFs::made_with(&["mkfs.ext4", "-q", "-F"], mib)
    }

    /// A fresh image of `mib` MiB made by `mkfs` (the program and its options; the image
    /// path is added last): `["mkfs.xfs", "-q"]`, `["mkfs.btrfs", "-q"]`.
    pub fn made_with(mkfs: &[&str], mib: u32) -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix("syncd-e2e-loopfs.")
            .tempdir()
            .expect("create a tempdir for the image");
        let image = dir.path().join("fs.img");
        let f = std::fs::File::create(&image).expect("create the image");
        f.set_len(u64::from(mib) << 20).expect("size the image");
        drop(f);
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&image));
        LoopFs {
            dir,
            mounted: Vec::new(),
        }
    }

    /// Mount the file system on `at` (an existing directory).
    pub fn mount(&mut self, at: &Path) {
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(self.dir.path().join("fs.img"))
            .arg(at));
        self.mounted.push(at.to_path_buf());
    }

    /// Unmount it from `at`.
    pub fn umount(&mut self, at: &Path) {
        run(Command::new("umount").arg(at));
        self.mounted.retain(|m| m != at);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        for at in self.mounted.drain(..).rev() {
            umount(&at);
        }
    }
}

/// A tmpfs of a given size mounted on a directory (e.g. a daemon module's path, to fill the
/// target's disk). Drop unmounts it (lazily if busy): no mount is left behind.
pub struct Tmpfs {
    at: Option<PathBuf>,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (`mount -o size=`, e.g. "8m") on `at` (an existing directory).
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("syncd-e2e-tmpfs")
            .arg(at));
        Tmpfs {
            at: Some(at.to_path_buf()),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(at) = self.at.take() {
            umount(&at);
        }
    }
}

/// Unmount `at`; a busy mount is detached lazily (`umount -l`) so a test's end never
/// leaves it behind.
fn umount(at: &Path) {
    let ok = Command::new("umount")
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").arg("-l").arg(at).status();
    }
}

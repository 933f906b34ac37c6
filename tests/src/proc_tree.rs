//! What the processes a test started show to anyone on the machine: a process and all its
//! descendants (found through every `/proc/PID/stat`'s parent pid, so a child that made
//! its own session or process group is still found), each with its command line and
//! environment as `/proc/PID/cmdline` and `/proc/PID/environ` give them. For tests that
//! prove a secret never reaches a process's arguments or environment (the worker, rsync,
//! ssh, hooks).
//!
//! Also the `/proc/PID/stat` fields the harness reads elsewhere (a process's state, a
//! process group's states). Reads `/proc` only; a process that exits during the walk is
//! left out. Must not: signal or wait for anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

/// One process as others can see it.
#[derive(Debug, Clone)]
pub struct Exposed {
    pub pid: u32,
    /// `/proc/PID/comm`, for messages.
    pub comm: String,
    /// NUL-separated arguments.
    pub cmdline: Vec<u8>,
    /// NUL-separated `KEY=value` entries.
    pub environ: Vec<u8>,
}

impl Exposed {
    /// Does its command line or environment hold `needle`? Names which.
    pub fn shows(&self, needle: &[u8]) -> Option<&'static str> {
        let has = |hay: &[u8]| !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle);
        if has(&self.cmdline) {
            Some("command line")
        } else if has(&self.environ) {
            Some("environment")
        } else {
            None
        }
    }

    /// The arguments, one word each.
    pub fn args(&self) -> Vec<Vec<u8>> {
        words(&self.cmdline)
    }

    /// The environment, one `KEY=value` entry each.
    pub fn env(&self) -> Vec<Vec<u8>> {
        words(&self.environ)
    }

    /// The command line with spaces for the NULs, for messages.
    pub fn argv(&self) -> String {
        String::from_utf8_lossy(&self.cmdline).replace('\0', " ")
    }
}

/// NUL-separated words, empty ones left out.
fn words(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Every live process's parent pid.
fn parents() -> BTreeMap<u32, u32> {
    pids()
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect()
}

/// Every process id in `/proc` now.
fn pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
}

/// The fields of `/proc/PID/stat` after the command name (state, ppid, pgrp, ...): the
/// name may hold spaces and parentheses, the last `)` ends it. None: no such process.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The parent pid from `/proc/PID/stat`.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The state letter (`R`, `S`, `T`, `Z`, ...) from `/proc/PID/stat`, or None when there
/// is no such process.
pub fn state_of(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The states of the processes in process group `pgid` (a process that ends during the
/// walk is left out).
pub fn group_states(pgid: u32) -> Vec<char> {
    let pgid = pgid.to_string();
    pids()
        .filter_map(stat_fields)
        .filter(|f| f.get(2) == Some(&pgid))
        .filter_map(|f| f.first()?.chars().next())
        .collect()
}

/// `root` and every live process below it, in pid order.
pub fn family(root: u32) -> BTreeSet<u32> {
    let parents = parents();
    let mut found = BTreeSet::from([root]);
    // Parents may have larger pids than their children (pid wrap): repeat to a fixpoint.
    loop {
        let before = found.len();
        for (&pid, ppid) in &parents {
            if found.contains(ppid) {
                found.insert(pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// What `pid` shows now; None once it has exited (or `/proc` is not readable).
pub fn exposed(pid: u32) -> Option<Exposed> {
    let read = |what: &str| fs::read(format!("/proc/{pid}/{what}")).ok();
    Some(Exposed {
        pid,
        comm: String::from_utf8_lossy(&read("comm")?)
            .trim_end()
            .to_string(),
        cmdline: read("cmdline")?,
        environ: read("environ")?,
    })
}

/// [`exposed`] for `root` and each of its descendants alive now.
pub fn exposed_family(root: u32) -> Vec<Exposed> {
    family(root).into_iter().filter_map(exposed).collect()
}

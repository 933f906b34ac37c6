//! inotify kernel limits (`fs.inotify.max_user_watches`, `max_queued_events`): read,
//! plan (pure), raise (never lower), persist to `/etc/sysctl.d/90-syncd.conf`.
//! PLACEHOLDER: owned by the sysctl/check helper.

use syncd_worker::config::Config;

/// Raise the inotify limits the config and the sources need; log old → new, or warn with
/// the exact command when not privileged. Never fails the start.
pub fn tune(_config: &Config) {}

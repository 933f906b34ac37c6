//! `syncd status --check`, the Nagios/Icinga plugin, against the real controller: one
//! line and exit 2 before the start, 0 while in step, 1 then 2 while the target's daemon
//! is down and the lag grows past the limits, 0 once it is back, 2 after the stop.

use std::process::Output;
use std::time::Duration;

use syncd_tests::controller::{show, text};
use syncd_tests::tree::write_file;
use syncd_tests::{wait, Controller, Site};

const TIMEOUT: Duration = Duration::from_secs(30);
const CHECK: [&str; 6] = ["status", "--check", "--warn-lag", "1s", "--crit-lag", "4s"];

/// The plugin's exit code and its one line; panics unless the output is one line.
fn check(c: &Controller) -> (Option<i32>, String) {
    let out: Output = c.cmd(&CHECK);
    let line = text(&out.stdout);
    assert!(
        line.ends_with('\n') && line.trim_end().lines().count() == 1,
        "one line on stdout:\n{}",
        show(&out)
    );
    (out.status.code(), line.trim_end().to_string())
}

/// Wait until the plugin exits `code` with a line starting `start`; that line.
fn wait_check(c: &Controller, site: &Site, code: i32, start: &str) -> String {
    wait::must(
        format_args!("status --check to exit {code} with {start:?}"),
        TIMEOUT,
        &[c, &site.daemon],
        || {
            let (got, line) = check(c);
            if got == Some(code) && line.starts_with(start) {
                Ok(line)
            } else {
                Err(format!("{got:?} {line}"))
            }
        },
    )
}

#[test]
fn status_check_exits_by_the_plugin_convention_as_the_target_goes_down_and_up() {
    let mut site = Site::new();
    let c = Controller::new(&site.config().retry(Some(("1s", "2s"))));
    let (code, line) = check(&c);
    assert_eq!(
        (code, line.as_str()),
        (Some(2), "SYNCD CRITICAL - syncd is not running")
    );

    c.start();
    write_file(&site.src().join("a.txt"), b"a");
    site.check(&c).within(TIMEOUT).wait();
    let ok = wait_check(&c, &site, 0, "SYNCD OK - ");
    assert!(
        ok.contains(" | lag_") && ok.contains("s;1;4;0 queue_") && ok.contains(" failed_"),
        "perfdata per target: {ok}"
    );

    // The daemon down: the change waits, failures and lag make it WARNING, then the lag
    // past --crit-lag makes it CRITICAL.
    site.daemon.stop();
    write_file(&site.src().join("b.txt"), b"b");
    wait_check(&c, &site, 1, "SYNCD WARNING - ");
    let crit = wait_check(&c, &site, 2, "SYNCD CRITICAL - ");
    assert!(crit.contains(": lag ") && crit.contains("≥ 4s"), "{crit}");

    site.daemon.restart();
    site.check(&c).within(TIMEOUT).wait();
    wait_check(&c, &site, 0, "SYNCD OK - ");

    c.stop();
    let (code, line) = check(&c);
    assert_eq!(
        (code, line.as_str()),
        (Some(2), "SYNCD CRITICAL - syncd is not running")
    );
}

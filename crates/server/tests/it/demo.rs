//! `ippin demo` plays the whole story and exits 0.

use std::process::Command;
use std::time::Duration;

use crate::support::{IPPIN, run};

#[test]
fn demo_exits_zero() {
    let mut cmd = Command::new(IPPIN);
    cmd.arg("demo");
    let ran = run(cmd, b"", Duration::from_secs(60));
    assert_eq!(ran.code, Some(0), "demo failed: {ran:?}");
    // These machines enforce (root, cgroup v2, eBPF): the restricted-session step runs, and
    // the kernel refuses bash's connect in bob's session with a T4002I line.
    for expected in [
        "pinned_ip_mismatch",
        "127.0.0.2",
        "bash: connect: Operation not permitted; audit: program bash, pid ",
    ] {
        assert!(
            ran.stdout.contains(expected),
            "missing {expected}: {}",
            ran.stdout
        );
    }
}

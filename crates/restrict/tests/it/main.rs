//! ippin-restrict against the real kernel: root, cgroup v2, eBPF; loopback only, bounded
//! waits. These tests fail (they do not skip) when the machine cannot enforce.

mod enforce;
mod support;

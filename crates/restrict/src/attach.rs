//! Attaching a program to a cgroup the kernel's way (`BPF_PROG_ATTACH`), so that it stays
//! attached after this process's descriptors close: see [`crate::bpf::Loaded::attach`].

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc;

/// `BPF_PROG_ATTACH`, the `bpf(2)` command.
const BPF_PROG_ATTACH: libc::c_long = 8;
/// `BPF_F_ALLOW_MULTI`: other programs on the cgroup and its ancestors run too.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// The part of `union bpf_attr` that `BPF_PROG_ATTACH` reads (its first five fields). The
/// kernel reads `size_of` bytes and takes the rest of the union as zero.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Attaches the loaded program `prog` to the cgroup `cgroup` at `attach_type`, with
/// `BPF_F_ALLOW_MULTI`.
pub(crate) fn attach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> std::io::Result<()> {
    let fd = |f: BorrowedFd<'_>| u32::try_from(f.as_raw_fd()).unwrap_or(u32::MAX);
    let attr = ProgAttach {
        target_fd: fd(cgroup),
        attach_bpf_fd: fd(prog),
        attach_type,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: `bpf(BPF_PROG_ATTACH, &attr, size)` reads `size` bytes at `&attr`, a local
    // alive for the call, and writes nothing of ours; the two descriptors are borrowed, so
    // open for the call. Every argument has the width the kernel reads (`c_long` for the
    // variadic `syscall`).
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &raw const attr,
            std::mem::size_of::<ProgAttach>() as libc::c_long,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

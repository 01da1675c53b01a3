//! Only the machine's own system calls in a session: a seccomp filter that kills a process
//! making a 32-bit ("compat") call.
//!
//! The kernel runs `cgroup/setsockopt` programs for native `setsockopt(2)` calls only: a
//! 32-bit call (an i386 binary, `int 0x80`, or the x32 ABI on x86-64) goes straight to the
//! kernel's handler, and with it an IPv6 routing header or an IPv4 source route that sends
//! packets past the address the hooks decided. A session has no business with another ABI:
//! the filter, installed when a process is placed in the session and inherited by all it
//! starts, kills the process at its first such call (`SIGSYS`).

use nix::libc;

/// The native architecture as seccomp names it (`AUDIT_ARCH_*`).
#[cfg(target_arch = "x86_64")]
const NATIVE: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const NATIVE: u32 = 0xC000_00B7;

/// The bit x32 system call numbers carry on x86-64 (`__X32_SYSCALL_BIT`); no native call
/// number reaches it on any architecture.
const X32_BIT: u32 = 0x4000_0000;

/// `struct seccomp_data`: `nr` at 0, `arch` at 4.
const NR: u32 = 0;
const ARCH: u32 = 4;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
const RET_KILL_PROCESS: u32 = 0x8000_0000; // SECCOMP_RET_KILL_PROCESS (Linux 4.14)

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// arch == NATIVE and nr < X32_BIT: allow; else kill the process.
static FILTER: [libc::sock_filter; 6] = [
    op(LD_W_ABS, 0, 0, ARCH),
    op(JEQ_K, 0, 3, NATIVE), // not native: to the kill
    op(LD_W_ABS, 0, 0, NR),
    op(JGE_K, 1, 0, X32_BIT), // x32: to the kill
    op(RET_K, 0, 0, RET_ALLOW),
    op(RET_K, 0, 0, RET_KILL_PROCESS),
];

/// Installs the filter on every thread of the calling process (`SECCOMP_FILTER_FLAG_TSYNC`;
/// inherited by every child and kept across `exec`). Async-signal-safe: system calls on
/// static data, errors from `errno`.
///
/// Installing one needs `CAP_SYS_ADMIN` or `no_new_privs`: as root (the server, before
/// the session's process drops to its login) no flag is set; a caller without the
/// capability gets `no_new_privs` set on the process first (its setuid programs no longer
/// gain privileges), as the kernel requires.
pub(crate) fn native_calls_only() -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: FILTER.len() as u16,
        filter: FILTER.as_ptr().cast_mut(),
    };
    let install = || {
        // SAFETY: `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog)` reads
        // `prog` and the `len` instructions it points to, both alive for the call (a local
        // and a static); the kernel copies the program and keeps no pointer. It writes
        // nothing of ours. Every argument has the width the kernel reads (`c_long` for the
        // variadic `syscall`).
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::c_long::from(libc::SECCOMP_SET_MODE_FILTER),
                libc::c_long::from(libc::SECCOMP_FILTER_FLAG_TSYNC as u32),
                &raw const prog,
            )
        };
        match rc {
            0 => Ok(()),
            // TSYNC names a thread it could not synchronise: the filter is not in place.
            n if n > 0 => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
            _ => Err(std::io::Error::last_os_error()),
        }
    };
    match install() {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            rustix::thread::set_no_new_privs(true)?;
            install()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    /// The jumps land where the comments say: on the kill for a foreign architecture and
    /// for x32, on the allow otherwise (an interpreter of the four opcodes used).
    #[test]
    fn the_filter_kills_foreign_and_x32_calls_only() {
        fn run(nr: u32, arch: u32) -> u32 {
            let data = |offset: u32| if offset == super::NR { nr } else { arch };
            let (mut pc, mut acc) = (0usize, 0u32);
            loop {
                let i = super::FILTER[pc];
                pc += 1;
                match i.code {
                    super::LD_W_ABS => acc = data(i.k),
                    super::JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                    super::JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                    super::RET_K => return i.k,
                    other => panic!("opcode {other:#x}"),
                }
            }
        }
        assert_eq!(run(41, super::NATIVE), super::RET_ALLOW);
        assert_eq!(run(0, super::NATIVE), super::RET_ALLOW);
        assert_eq!(
            run(0x4000_0000 | 54, super::NATIVE),
            super::RET_KILL_PROCESS
        );
        assert_eq!(run(1, 0x4000_0003), super::RET_KILL_PROCESS); // AUDIT_ARCH_I386
        assert_eq!(run(1, 0x4000_0028), super::RET_KILL_PROCESS); // AUDIT_ARCH_ARM
    }
}

//! Only the machine's own system calls in a session: a seccomp filter that kills a process
//! making a 32-bit ("compat") call.
//!
//! The kernel runs `cgroup/setsockopt` programs for native `setsockopt(2)` calls only: a
//! 32-bit call (an i386 binary, `int 0x80`, or the x32 ABI on x86-64) goes straight to the
//! kernel's handler, and with it an IPv6 routing header or an IPv4 source route that sends
//! packets past the address the hooks decided. A session has no business with another ABI:
//! the filter, installed when a process is placed in the session and inherited by all it
//! starts, kills the process at its first such call (`SIGSYS`).
//!
//! The same filter keeps a session to the socket families the programs decide or that stay
//! on the host: `socket(2)` of a family other than `AF_UNIX`, `AF_INET`, `AF_INET6` and
//! `AF_NETLINK` fails with `EAFNOSUPPORT`, and so does `AF_INET` with `SOCK_PACKET` (the
//! kernel makes that a packet socket) and `socketpair(2)` of any family but `AF_UNIX` (TIPC
//! makes connected pairs that then send anywhere). The cgroup hooks see IPv4 and IPv6
//! sockets only: RDS (over TCP), TIPC (over UDP), VSOCK (to the hypervisor), packet sockets,
//! Bluetooth, CAN and the rest would carry traffic past them, and an unprivileged
//! `socket(2)` loads their module. `io_uring_setup(2)` fails with `ENOSYS` (programs fall
//! back to plain calls): an io_uring makes sockets without a `socket(2)` call this filter
//! could see. So does `request_key(2)`: the kernel's DNS resolver key type asks the host's
//! resolvers from outside the session.

use nix::libc;

/// The native architecture as seccomp names it (`AUDIT_ARCH_*`).
#[cfg(target_arch = "x86_64")]
const NATIVE: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const NATIVE: u32 = 0xC000_00B7;

/// The bit x32 system call numbers carry on x86-64 (`__X32_SYSCALL_BIT`); no native call
/// number reaches it on any architecture.
const X32_BIT: u32 = 0x4000_0000;

/// `struct seccomp_data`: `nr` at 0, `arch` at 4, the first argument's low 32 bits at 16
/// (little-endian: both architectures here). `socket(2)` takes its family as an `int`: the
/// kernel reads those 32 bits alone, as this filter does.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;
/// The second argument's low 32 bits (`socket(2)`'s type, an `int`).
const ARG1_LOW: u32 = 24;

#[cfg(not(target_endian = "little"))]
compile_error!("the seccomp filter reads the first argument's low half at offset 16");

const SYS_SOCKET: u32 = libc::SYS_socket as u32;
const SYS_SOCKETPAIR: u32 = libc::SYS_socketpair as u32;
const SYS_IO_URING_SETUP: u32 = libc::SYS_io_uring_setup as u32;
const SYS_REQUEST_KEY: u32 = libc::SYS_request_key as u32;
/// `SOCK_PACKET`, in the low four bits of the type (`SOCK_TYPE_MASK`; the rest are flags).
const SOCK_PACKET: u32 = 10;
const SOCK_TYPE_MASK: u32 = 0xf;
const AF_UNIX: u32 = libc::AF_UNIX as u32;
const AF_INET: u32 = libc::AF_INET as u32;
const AF_INET6: u32 = libc::AF_INET6 as u32;
const AF_NETLINK: u32 = libc::AF_NETLINK as u32;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
const RET_KILL_PROCESS: u32 = 0x8000_0000; // SECCOMP_RET_KILL_PROCESS (Linux 4.14)
const RET_ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO, the errno in the low 16 bits
const RET_EAFNOSUPPORT: u32 = RET_ERRNO | libc::EAFNOSUPPORT as u32;
const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// arch != NATIVE or nr >= X32_BIT: kill the process; `socket(2)` of a family not listed, or
/// `AF_INET` with `SOCK_PACKET`, and `socketpair(2)` but of `AF_UNIX`: `EAFNOSUPPORT`;
/// `io_uring_setup(2)` and `request_key(2)`: `ENOSYS`; anything else: allow. (Jumps count
/// from the next instruction.)
static FILTER: [libc::sock_filter; 22] = [
    /* 0 */ op(LD_W_ABS, 0, 0, ARCH),
    /* 1 */ op(JEQ_K, 0, 19, NATIVE), // not native: to 21, the kill
    /* 2 */ op(LD_W_ABS, 0, 0, NR),
    /* 3 */ op(JGE_K, 17, 0, X32_BIT), // x32: to 21, the kill
    /* 4 */ op(JEQ_K, 0, 8, SYS_SOCKET), // not socket(2): to 13
    /* 5 */ op(LD_W_ABS, 0, 0, ARG0_LOW),
    /* 6 */ op(JEQ_K, 11, 0, AF_UNIX), // to 18, the allow
    /* 7 */ op(JEQ_K, 10, 0, AF_INET6),
    /* 8 */ op(JEQ_K, 9, 0, AF_NETLINK),
    /* 9 */ op(JEQ_K, 0, 10, AF_INET), // another family: to 20, EAFNOSUPPORT
    /* 10 */ op(LD_W_ABS, 0, 0, ARG1_LOW),
    /* 11 */ op(AND_K, 0, 0, SOCK_TYPE_MASK),
    /* 12 */ op(JEQ_K, 7, 5, SOCK_PACKET), // packet: to 20; else to 18
    /* 13 */ op(JEQ_K, 0, 2, SYS_SOCKETPAIR), // not socketpair(2): to 16
    /* 14 */ op(LD_W_ABS, 0, 0, ARG0_LOW),
    /* 15 */ op(JEQ_K, 2, 4, AF_UNIX), // to 18, else to 20
    /* 16 */ op(JEQ_K, 2, 0, SYS_IO_URING_SETUP), // to 19, ENOSYS
    /* 17 */ op(JEQ_K, 1, 0, SYS_REQUEST_KEY), // to 19
    /* 18 */ op(RET_K, 0, 0, RET_ALLOW),
    /* 19 */ op(RET_K, 0, 0, RET_ENOSYS),
    /* 20 */ op(RET_K, 0, 0, RET_EAFNOSUPPORT),
    /* 21 */ op(RET_K, 0, 0, RET_KILL_PROCESS),
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
    /// for x32; `EAFNOSUPPORT` for `socket(2)` of an unlisted family (whatever the high half
    /// of the argument, which the kernel does not read); `ENOSYS` for `io_uring_setup(2)`;
    /// on the allow otherwise (an interpreter of the five opcodes used).
    #[test]
    fn the_filter_kills_foreign_and_x32_calls_and_refuses_other_families() {
        fn run_args(nr: u32, arch: u32, arg0: u32, arg1: u32) -> u32 {
            let data = |offset: u32| match offset {
                super::NR => nr,
                super::ARCH => arch,
                super::ARG0_LOW => arg0,
                super::ARG1_LOW => arg1,
                other => panic!("offset {other}"),
            };
            let (mut pc, mut acc) = (0usize, 0u32);
            loop {
                let i = super::FILTER[pc];
                pc += 1;
                match i.code {
                    super::LD_W_ABS => acc = data(i.k),
                    super::JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                    super::JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                    super::AND_K => acc &= i.k,
                    super::RET_K => return i.k,
                    other => panic!("opcode {other:#x}"),
                }
            }
        }
        let run_with = |nr: u32, arch: u32, arg0: u32| run_args(nr, arch, arg0, 1);
        // Any call, its first argument AF_INET.
        let run = |nr: u32, arch: u32| run_with(nr, arch, 2);
        assert_eq!(run(41, super::NATIVE), super::RET_ALLOW);
        assert_eq!(run(0, super::NATIVE), super::RET_ALLOW);
        assert_eq!(
            run(0x4000_0000 | 54, super::NATIVE),
            super::RET_KILL_PROCESS
        );
        assert_eq!(run(1, 0x4000_0003), super::RET_KILL_PROCESS); // AUDIT_ARCH_I386
        assert_eq!(run(1, 0x4000_0028), super::RET_KILL_PROCESS); // AUDIT_ARCH_ARM
        let socket = |family: u32| run_with(super::SYS_SOCKET, super::NATIVE, family);
        for family in [1, 2, 10, 16] {
            assert_eq!(socket(family), super::RET_ALLOW, "{family}");
        }
        // RDS, TIPC, VSOCK, packet, Bluetooth, CAN, ALG, and out-of-range values.
        for family in [21, 30, 40, 17, 31, 29, 38, 0, 46, 255, u32::MAX] {
            assert_eq!(socket(family), super::RET_EAFNOSUPPORT, "{family}");
        }
        assert_eq!(
            run(super::SYS_IO_URING_SETUP, super::NATIVE),
            super::RET_ENOSYS
        );
        assert_eq!(
            run(super::SYS_REQUEST_KEY, super::NATIVE),
            super::RET_ENOSYS
        );
        // AF_INET with SOCK_PACKET (flags above the type's four bits ignored, as the kernel
        // does): refused; stream, datagram, raw: allowed (the programs decide them).
        let inet = |ty: u32| run_args(super::SYS_SOCKET, super::NATIVE, 2, ty);
        for ty in [10, 10 | 0o4000, 10 | 0o2000000] {
            assert_eq!(inet(ty), super::RET_EAFNOSUPPORT, "{ty:#x}");
        }
        for ty in [1, 2, 3, 5, 1 | 0o4000] {
            assert_eq!(inet(ty), super::RET_ALLOW, "{ty:#x}");
        }
        // socketpair(2): Unix only.
        let pair = |family: u32| run_with(super::SYS_SOCKETPAIR, super::NATIVE, family);
        assert_eq!(pair(1), super::RET_ALLOW);
        for family in [2, 10, 16, 30, 40] {
            assert_eq!(pair(family), super::RET_EAFNOSUPPORT, "{family}");
        }
        // The same numbers from another ABI are killed, not answered.
        assert_eq!(
            run_with(super::SYS_SOCKET, 0x4000_0003, 21),
            super::RET_KILL_PROCESS
        );
    }
}

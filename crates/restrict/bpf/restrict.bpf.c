// SPDX-License-Identifier: Apache-2.0
//
// ippin-restrict: the egress decision for a session's processes.
//
// Four cgroup/sock_addr programs, attached to every session cgroup, decide each TCP or UDP
// connect(2) and each unconnected UDP sendto(2)/sendmsg(2) from four LPM tries (allow and
// deny, IPv4 and IPv6) with the semantics of `ippin_policy::NetworkRestrictions::decide`:
//
//   - no policy (config.has_policy == 0): allowed;
//   - deny wins: a destination matching a deny rule is refused;
//   - otherwise allowed only when it matches an allow rule (deny by default);
//   - IPv4-mapped IPv6 (::ffff:a.b.c.d) is decided as IPv4 a.b.c.d;
//   - the unspecified addresses are decided as the address the kernel turns them into:
//     0.0.0.0 (and ::ffff:0.0.0.0) as the IPv4 source the socket or the message is bound
//     to, else 127.0.0.1 (ip_route_output_key_hash_rcu: daddr = saddr, else loopback);
//     :: as ::1, or as 127.0.0.1 on a socket bound to an IPv4-mapped address
//     (tcp_v6_connect, ip6_datagram_connect);
//   - an IPv6 address that embeds an IPv4 address (IPv4-compatible ::a.b.c.d, NAT64
//     64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) must be allowed as IPv6 and its
//     embedded IPv4 address must be allowed too.
//
// Whatever the policy (also with none), a destination that is one of the `protected`
// endpoints (address and port: the access server's own listeners) is refused: a session's
// process must not reach a listener that trusts this host's addresses (PROXY headers, proxy
// headers). A listener on an unspecified address is a port of `protected_ports` reached
// through any address of the host's networks (`local4`, `local6`). It is checked on the
// address the kernel connects to (after the rules above turn 0.0.0.0, :: and ::ffff:a.b.c.d
// into it).
//
// With a policy, a fifth program (`cgroup/sock_create`) refuses IPv4 and IPv6 sockets whose
// sends the four hooks above do not see: only TCP (and MPTCP) streams and UDP (and
// UDP-Lite) datagrams can be made. ICMP "ping" sockets, raw sockets, SCTP and the rest would
// otherwise reach any address undecided.
//
// Always, a sixth program (`cgroup/setsockopt`) refuses the socket options that send packets
// elsewhere than the address the hooks decided: IPv6 routing headers and IPv4 source routes
// (and, under a policy, SO_BROADCAST).
//
// With a policy, a seventh (`cgroup_skb/egress`) decides every packet but TCP on its IP
// destination: the datagrams of a UDP socket connected before the policy denied it; and
// every segment of a TCP connection a session's process made (`outbound`, marked at
// connect) on its peer: a connection open before the policy denied its peer sends nothing
// more.
//
// Returning 0 makes the kernel fail the call with EPERM. Each decision can be reported
// through the `events` ring buffer: denials always, allowed ones when config.observe is set.
//
// Built by scripts/build-bpf (pinned flags); the object is committed next to this file.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_RULES 100000

// From the socket ABI (linux/socket.h and asm/socket.h are not usable for the bpf target).
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

struct key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

// A protected endpoint: the address as IPv6 (IPv4 as ::ffff:a.b.c.d) and the port, both in
// network byte order.
struct endpoint {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
};

struct config {
	__u32 has_policy; // 0: no policy, allow all
	__u32 observe;    // 1: report allowed decisions too
	__u32 deny_all;   // 1: a policy update failed half-way: refuse everything until one succeeds
};

// Read by `parse_event` in src/bpf.rs: 72 bytes, native byte order.
struct event {
	__u64 cgroup_id;
	__u32 pid;       // thread group id (the process id), init namespace
	__u16 dst_port;  // host order
	__u16 src_port;  // host order (0 when the socket is not bound yet)
	__u8 dst[16];    // as the program asked; IPv4 in the first 4 bytes when family == 4
	__u8 src[16];    // the socket's bound address, if any
	__u8 comm[16];   // the calling thread's comm
	__u8 family;     // 4 or 6: the hook's family (connect4/sendmsg4 or connect6/sendmsg6)
	__u8 operation;  // 0 connect, 1 send, 2 socket (a kind of socket the policy cannot decide),
	                 // 3 socket option (one that reroutes packets: dst_port is the option,
	                 // src_port its level)
	__u8 action;     // 0 observed (allowed), 1 denied
	__u8 sock_type;  // SOCK_STREAM 1, SOCK_DGRAM 2
	__u8 pad[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_RULES);
	__type(key, struct key4);
	__type(value, __u8);
} allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_RULES);
	__type(key, struct key4);
	__type(value, __u8);
} deny4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_RULES);
	__type(key, struct key6);
	__type(value, __u8);
} allow6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_RULES);
	__type(key, struct key6);
	__type(value, __u8);
} deny6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct endpoint);
	__type(value, __u8);
} protected SEC(".maps");

// Ports (network order) of listeners on an unspecified address.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u16);
	__type(value, __u8);
} protected_ports SEC(".maps");

// The host's own networks, where a port of `protected_ports` is protected.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct key4);
	__type(value, __u8);
} local4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct key6);
	__type(value, __u8);
} local6 SEC(".maps");

// Each session's share of the ring buffer, a token bucket per cgroup: at most EVENT_BURST
// events at once, refilled at EVENT_RATE a second. The ring buffer is one for every session
// and one reader drains it: without a share, one session flooding denials would fill it,
// and every other session's events would be lost (and, observing, their allowed
// connections refused). Beyond its share a session's denials still refuse, unrecorded and
// counted as lost; its observed connections are refused.
#define EVENT_RATE 2000
#define EVENT_BURST 512

struct bucket {
	__u64 last_ns;
	__u64 tokens;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct bucket);
} shares SEC(".maps");

// Index 0: events lost because the ring buffer was full or their session's share spent.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

// Each TCP socket a session's process connected (not one it accepted), marked by the
// connect hooks: `cgroup_skb/egress` decides its packets again under the policy in force, so
// that a connection open before an update denied its destination sends nothing more.
// `reported`: its denial has been reported (once per denial, not per retransmission).
struct outbound {
	__u32 reported;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct outbound);
} outbound SEC(".maps");

// 1 allowed, 0 denied; `a` is in network byte order.
// The allow tries hold each rule's prefix length as its value: a multicast destination is
// allowed only by a rule inside the multicast range (224.0.0.0/4, ff00::/8), the limited
// broadcast 255.255.255.255 only by a rule naming it, never by a wide rule such as /0 that
// was written for unicast hosts (a multicast or broadcast datagram reaches every listener
// of a network, denied hosts included).
static __always_inline int allowed4(__u32 a)
{
	struct key4 k = { .prefixlen = 32 };
	__builtin_memcpy(k.addr, &a, 4);
	if (bpf_map_lookup_elem(&deny4, &k))
		return 0;
	__u8 *len = bpf_map_lookup_elem(&allow4, &k);
	if (!len)
		return 0;
	__u32 h = bpf_ntohl(a);
	if (h == 0xffffffff)
		return *len == 32;
	if ((h >> 28) == 0xe)
		return *len >= 4;
	return 1;
}

static __always_inline int allowed6_exact(const __u32 w[4])
{
	struct key6 k = { .prefixlen = 128 };
	__builtin_memcpy(k.addr, w, 16);
	if (bpf_map_lookup_elem(&deny6, &k))
		return 0;
	__u8 *len = bpf_map_lookup_elem(&allow6, &k);
	if (!len)
		return 0;
	if ((bpf_ntohl(w[0]) >> 24) == 0xff)
		return *len >= 8;
	return 1;
}

// The IPv4 address the kernel connects to for `a`; `src` is the IPv4 source the socket or
// the message is bound to (0 if none). Both in network byte order.
static __always_inline __u32 effective4(__u32 a, __u32 src)
{
	if (a == 0) // 0.0.0.0: Linux routes to the bound source, else to 127.0.0.1
		a = src ? src : bpf_htonl(0x7f000001);
	return a;
}

// Whether IPv4 `a` (network order) and `port` (network order) is a protected endpoint.
static __always_inline int protected4(__u32 a, __u16 port)
{
	struct endpoint k = {};
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], &a, 4);
	k.port = port;
	if (bpf_map_lookup_elem(&protected, &k))
		return 1;
	if (!bpf_map_lookup_elem(&protected_ports, &port))
		return 0;
	struct key4 l = { .prefixlen = 32 };
	__builtin_memcpy(l.addr, &a, 4);
	return bpf_map_lookup_elem(&local4, &l) != 0;
}

static __always_inline int protected6(const __u32 w[4], __u16 port)
{
	struct endpoint k = {};
	__builtin_memcpy(k.addr, w, 16);
	k.port = port;
	if (bpf_map_lookup_elem(&protected, &k))
		return 1;
	if (!bpf_map_lookup_elem(&protected_ports, &port))
		return 0;
	struct key6 l = { .prefixlen = 128 };
	__builtin_memcpy(l.addr, w, 16);
	return bpf_map_lookup_elem(&local6, &l) != 0;
}

// The decision for an IPv4 destination `a`; `src` as for `effective4`.
static __always_inline int decide4(__u32 a, __u32 src)
{
	return allowed4(effective4(a, src));
}

// Whether an IPv6 destination reaches a protected endpoint, with the kernel's rewrites of
// `decide6` below.
static __always_inline int reaches_protected6(const __u32 in[4], __u16 port, __u32 src4,
					      int any_is_v4)
{
	__u32 w[4] = { in[0], in[1], in[2], in[3] };
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff))
		return protected4(effective4(w[3], src4), port);
	if (w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0) {
		if (any_is_v4)
			return protected4(bpf_htonl(0x7f000001), port);
		w[3] = bpf_htonl(1);
	}
	return protected6(w, port);
}

// The decision for an IPv6 destination given as four network-order words. `src4` is the
// socket's IPv4 source (inet_rcv_saddr: the IPv4 part of an IPv4-mapped bound address);
// `any_is_v4` is set for a connect(2) on a socket bound to an IPv4-mapped address.
static __always_inline int decide6(const __u32 in[4], __u32 src4, int any_is_v4)
{
	__u32 w[4] = { in[0], in[1], in[2], in[3] };
	__u32 w0 = bpf_ntohl(w[0]), w1 = bpf_ntohl(w[1]), w2 = bpf_ntohl(w[2]);
	__u32 w3 = bpf_ntohl(w[3]);

	// IPv4-mapped: decided as IPv4 (tcp_v6_connect hands it to tcp_v4_connect).
	if (w0 == 0 && w1 == 0 && w2 == 0xffff)
		return decide4(w[3], src4);
	if (w0 == 0 && w1 == 0 && w2 == 0 && w3 == 0) {
		// `::`: connect uses 127.0.0.1 on a socket bound to a mapped address, else ::1;
		// udpv6_sendmsg uses ::1.
		if (any_is_v4)
			return allowed4(bpf_htonl(0x7f000001));
		w[3] = bpf_htonl(1);
	}
	if (!allowed6_exact(w))
		return 0;
	// Forms that embed an IPv4 address: it must be allowed too (deny wins).
	if (w0 == 0 && w1 == 0 && w2 == 0 && w3 > 1)
		return allowed4(w[3]); // IPv4-compatible ::a.b.c.d
	if (w0 == 0x0064ff9b && w1 == 0 && w2 == 0)
		return allowed4(w[3]); // NAT64 64:ff9b::/96
	if ((w0 >> 16) == 0x2002)
		return allowed4(bpf_htonl((w0 << 16) | (w1 >> 16))); // 6to4 2002:AABB:CCDD::
	if (w0 == 0x20010000)
		return allowed4(bpf_htonl(~w3)); // Teredo: client address inverted
	return 1;
}

// The configuration in force (element 0 of `config`, which always exists; NULL only in
// theory, and every caller then refuses).
static __always_inline struct config *config_now(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

// Whether no policy is in force (and no failed update refuses everything).
static __always_inline int no_policy(const struct config *cfg)
{
	return !cfg->has_policy && !cfg->deny_all;
}

// A zeroed event in the ring buffer with the caller's cgroup, process and comm filled in;
// NULL (and counted in `stats`) when the buffer is full.
static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&stats, &zero);
	if (lost)
		__sync_fetch_and_add(lost, 1);
}

#define NS_PER_TOKEN (1000000000ULL / EVENT_RATE)

// Takes one event from `cgroup`'s share; 0 when it is spent. CPUs race on the bucket: the
// refill only moves forward (a `last_ns` another CPU set later than our `now` refills
// nothing) and keeps the unused fraction of a token, and the take is atomic and undone when
// it finds none, so a share is never more than it says.
static __always_inline int take_share(__u64 cgroup)
{
	__u64 now = bpf_ktime_get_ns();
	struct bucket *b = bpf_map_lookup_elem(&shares, &cgroup);
	if (!b) {
		struct bucket fresh = { .last_ns = now, .tokens = EVENT_BURST - 1 };
		bpf_map_update_elem(&shares, &cgroup, &fresh, BPF_NOEXIST);
		return 1;
	}
	__u64 last = b->last_ns;
	if ((__s64)(now - last) > 0) {
		__u64 elapsed = now - last;
		if (elapsed >= 1000000000ULL) {
			b->tokens = EVENT_BURST;
			b->last_ns = now;
		} else {
			__u64 add = elapsed / NS_PER_TOKEN;
			if (add > 0) {
				__u64 t = b->tokens + add;
				b->tokens = t > EVENT_BURST ? EVENT_BURST : t;
				b->last_ns = last + add * NS_PER_TOKEN;
			}
		}
	}
	__u64 old = __sync_fetch_and_add(&b->tokens, (__u64)-1);
	if (old == 0 || old > EVENT_BURST) {
		__sync_fetch_and_add(&b->tokens, 1);
		return 0;
	}
	return 1;
}

// A zeroed event in the ring buffer charged to `cgroup`'s share, with the caller's process
// and comm filled in; NULL (and counted in `stats`) when the share is spent or the buffer
// is full.
static __always_inline struct event *new_event_in(__u64 cgroup)
{
	if (!take_share(cgroup)) {
		count_lost();
		return 0;
	}
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->cgroup_id = cgroup;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

// The same for the calling task's cgroup: the socket hooks run in the caller's context.
static __always_inline struct event *new_event(void)
{
	return new_event_in(bpf_get_current_cgroup_id());
}

// Records the decision; 0 when the ring buffer is full (the loss is counted).
static __always_inline int report(struct bpf_sock_addr *ctx, __u8 family, __u8 operation,
				  __u8 action)
{
	struct event *e = new_event();
	if (!e)
		return 0;
	e->dst_port = bpf_ntohs((__u16)ctx->user_port);
	e->family = family;
	e->operation = operation;
	e->action = action;
	e->sock_type = ctx->type;
	struct bpf_sock *sk = ctx->sk;
	if (family == 4) {
		__u32 d = ctx->user_ip4;
		__builtin_memcpy(e->dst, &d, 4);
		if (sk) {
			__u32 s = sk->src_ip4;
			__builtin_memcpy(e->src, &s, 4);
			e->src_port = sk->src_port;
		}
	} else {
		__u32 d[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			       ctx->user_ip6[3] };
		__builtin_memcpy(e->dst, d, 16);
		if (sk) {
			__u32 s[4] = { sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2],
				       sk->src_ip6[3] };
			__builtin_memcpy(e->src, s, 16);
			e->src_port = sk->src_port;
		}
	}
	bpf_ringbuf_submit(e, 0);
	return 1;
}

// Observing (`audit_network_observed`), every allowed connection is recorded or refused: one
// whose event finds the ring buffer full is refused, as a session's forward is when its
// audit line cannot be written (a flood of denials must not hide a real connection).
//
// A TCP connect allowed is marked `outbound` (whatever the policy, also with none: one may
// come later); a socket that cannot be marked is refused, as its later packets could not be
// decided.
static __always_inline int finish(struct bpf_sock_addr *ctx, const struct config *cfg, int ok,
				  __u8 family, __u8 operation)
{
	if (!ok) {
		report(ctx, family, operation, 1);
		return 0;
	}
	if (operation == 0 && ctx->type == SOCK_STREAM) {
		struct bpf_sock *sk = ctx->sk;
		if (!sk || !bpf_sk_storage_get(&outbound, sk, 0, BPF_SK_STORAGE_GET_F_CREATE))
			return 0;
	}
	if (cfg->observe && !report(ctx, family, operation, 0))
		return 0;
	return 1;
}

// `src` is the IPv4 source: the socket's bound address for a connect, the message's source
// (IP_PKTINFO, else the bound address: udp_sendmsg's ipc.addr) for a send.
static __always_inline int run4(struct bpf_sock_addr *ctx, __u8 operation, __u32 src)
{
	struct config *cfg = config_now();
	if (!cfg)
		return 0; // cannot happen (an array's element 0 exists): fail closed
	__u16 port = (__u16)ctx->user_port;
	int ok = !cfg->deny_all && !protected4(effective4(ctx->user_ip4, src), port) &&
		 (cfg->has_policy ? decide4(ctx->user_ip4, src) : 1);
	// 0.0.0.0 is handed to the kernel as the address decided. Left unspecified, a socket
	// bound to a device (SO_BINDTODEVICE, IP_UNICAST_IF) or a message naming an interface
	// (IP_PKTINFO's ipi_ifindex, which this program cannot see) would go to that
	// interface's address instead of the one decided.
	if (ok && ctx->user_ip4 == 0)
		ctx->user_ip4 = effective4(0, src);
	return finish(ctx, cfg, ok, 4, operation);
}

static __always_inline int run6(struct bpf_sock_addr *ctx, __u8 operation)
{
	struct config *cfg = config_now();
	if (!cfg)
		return 0;
	__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__u32 src4 = 0;
	int mapped_bound = 0;
	struct bpf_sock *sk = ctx->sk;
	if (sk) {
		src4 = sk->src_ip4;
		mapped_bound = sk->src_ip6[0] == 0 && sk->src_ip6[1] == 0 &&
			       sk->src_ip6[2] == bpf_htonl(0xffff);
	}
	int any_is_v4 = operation == 0 && mapped_bound;
	int ok = !cfg->deny_all && !reaches_protected6(w, (__u16)ctx->user_port, src4, any_is_v4);
	if (ok && cfg->has_policy)
		ok = decide6(w, src4, any_is_v4);
	// Unspecified destinations are handed to the kernel as the address decided (see run4):
	// `::ffff:0.0.0.0` as the mapped IPv4 address, `::` as ::1 (or ::ffff:127.0.0.1 where
	// connect takes the IPv4 path).
	if (ok && w[0] == 0 && w[1] == 0 && w[3] == 0) {
		if (w[2] == bpf_htonl(0xffff)) {
			ctx->user_ip6[3] = effective4(0, src4);
		} else if (w[2] == 0) {
			if (any_is_v4) {
				ctx->user_ip6[2] = bpf_htonl(0xffff);
				ctx->user_ip6[3] = bpf_htonl(0x7f000001);
			} else {
				ctx->user_ip6[3] = bpf_htonl(1);
			}
		}
	}
	return finish(ctx, cfg, ok, 6, operation);
}

SEC("cgroup/connect4")
int ippin_connect4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	return run4(ctx, 0, sk ? sk->src_ip4 : 0);
}

SEC("cgroup/connect6")
int ippin_connect6(struct bpf_sock_addr *ctx)
{
	return run6(ctx, 0);
}

// A send on a connected socket that carries ancillary data (IP_TOS, IP_PKTINFO, UDP_SEGMENT,
// IPV6_TCLASS: QUIC and ECN senders) runs the sendmsg hook with no address at all (every
// field zero: a real sendto to port 0 is refused before the hook). It goes to the socket's
// peer: decided (and reported) as that, not as an unspecified destination. The address is
// written into the hook's own copy only; the kernel sends to the peer whatever it says.
SEC("cgroup/sendmsg4")
int ippin_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (ctx->user_port == 0 && ctx->user_ip4 == 0 && sk && sk->state == BPF_TCP_ESTABLISHED) {
		ctx->user_ip4 = sk->dst_ip4;
		ctx->user_port = sk->dst_port;
	}
	return run4(ctx, 1, ctx->msg_src_ip4);
}

SEC("cgroup/sendmsg6")
int ippin_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (ctx->user_port == 0 && sk && sk->state == BPF_TCP_ESTABLISHED && ctx->user_ip6[0] == 0 &&
	    ctx->user_ip6[1] == 0 && ctx->user_ip6[2] == 0 && ctx->user_ip6[3] == 0) {
		ctx->user_ip6[0] = sk->dst_ip6[0];
		ctx->user_ip6[1] = sk->dst_ip6[1];
		ctx->user_ip6[2] = sk->dst_ip6[2];
		ctx->user_ip6[3] = sk->dst_ip6[3];
		ctx->user_port = sk->dst_port;
	}
	return run6(ctx, 1);
}

// The socket kinds whose every destination the hooks above decide.
static __always_inline int decidable(__u32 type, __u32 protocol)
{
	if (type == SOCK_STREAM)
		return protocol == 0 || protocol == IPPROTO_TCP || protocol == 262; // MPTCP
	if (type == SOCK_DGRAM)
		return protocol == 0 || protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE;
	return 0;
}

SEC("cgroup/sock_create")
int ippin_sock_create(struct bpf_sock *sk)
{
	struct config *cfg = config_now();
	if (!cfg)
		return 0;
	if (no_policy(cfg))
		return 1;
	if (sk->family != AF_INET && sk->family != AF_INET6)
		return 1;
	if (decidable(sk->type, sk->protocol))
		return 1;
	struct event *e = new_event();
	if (!e)
		return 0;
	e->family = sk->family == AF_INET ? 4 : 6;
	e->operation = 2;
	e->action = 1;
	e->sock_type = sk->type;
	e->dst_port = sk->protocol; // the protocol, for the event (no destination yet)
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// Socket options that make the kernel send a socket's packets to an address other than the
// one connect(2) or sendto(2) named, past the hooks above: an IPv6 routing header (a type 4
// segment routing header can be set without privileges; the packet goes to its next segment)
// and IPv4 source routing (IP_OPTIONS with LSRR/SSRR). The old RFC 2292 names of the same
// options too, and a flow label request that carries options. Refused with or without a policy: the protected endpoints are decided on the
// address too.
#define SOL_IP 0
#define SOL_IPV6 41
#define SOL_SOCKET 1
#define SO_BROADCAST 6
#define IP_OPTIONS 4
#define IPV6_2292RTHDR 5
#define IPV6_2292PKTOPTIONS 6
#define IPV6_RTHDR 57
#define IPV6_FLOWLABEL_MGR 32
#define FLOWLABEL_REQ_SIZE 32 // struct in6_flowlabel_req
#define PAGE_SIZE 4096

// A flow label request longer than its 32 bytes carries options in control-message form
// (a routing header among them), kept with the label and merged into the packets sent with
// it: refused. A bare request (a flow label alone) is not.
static __always_inline int reroutes(int level, int optname, int optlen)
{
	if (level == SOL_IP)
		return optname == IP_OPTIONS;
	if (level == SOL_IPV6)
		return optname == IPV6_RTHDR || optname == IPV6_2292RTHDR ||
		       optname == IPV6_2292PKTOPTIONS ||
		       (optname == IPV6_FLOWLABEL_MGR && optlen > FLOWLABEL_REQ_SIZE);
	return 0;
}

// Options refused under a policy (with none, every destination is allowed anyway):
// - SO_BROADCAST: a broadcast datagram reaches every host of a network, denied ones
//   included, and the kernel decides what is a broadcast address from its routes (a subnet's
//   broadcast address looks like any other to the hooks above);
// - the options that let a socket send from an address that is not the host's (IP_FREEBIND,
//   IPV6_FREEBIND without privilege; IP_TRANSPARENT, IPV6_TRANSPARENT with it): the hooks
//   decide destinations, and a datagram from a forged source to an allowed host makes that
//   host answer the forged address, a denied one (an ICMP error quoting the datagram, a
//   resolver's answer).
#define IP_FREEBIND 15
#define IP_TRANSPARENT 19
#define IPV6_TRANSPARENT 75
#define IPV6_FREEBIND 78

static __always_inline int refused_under_policy(int level, int optname)
{
	int refused = (level == SOL_SOCKET && optname == SO_BROADCAST) ||
		      (level == SOL_IP && (optname == IP_FREEBIND || optname == IP_TRANSPARENT)) ||
		      (level == SOL_IPV6 &&
		       (optname == IPV6_FREEBIND || optname == IPV6_TRANSPARENT));
	if (!refused)
		return 0;
	struct config *cfg = config_now();
	return !cfg || !no_policy(cfg);
}

// Joining a multicast group makes the kernel send IGMP or MLD reports naming the group (to
// the link's routers), which it builds itself, past every hook: under a policy a join is
// refused unless an allow rule covers the group (a rule inside 224.0.0.0/4 or ff00::/8, as
// for multicast datagrams). Every way to join: IP_ADD_MEMBERSHIP (ip_mreq, ip_mreqn),
// IP_ADD_SOURCE_MEMBERSHIP (ip_mreq_source), MCAST_JOIN_GROUP and MCAST_JOIN_SOURCE_GROUP
// at both levels (group_req, group_source_req: the group's sockaddr at offset 8),
// IPV6_ADD_MEMBERSHIP (ipv6_mreq). The other membership options need a group joined first.
#define IP_ADD_MEMBERSHIP 35
#define IP_ADD_SOURCE_MEMBERSHIP 39
#define MCAST_JOIN_GROUP 42
#define MCAST_JOIN_SOURCE_GROUP 46
#define IPV6_ADD_MEMBERSHIP 20
#define SA_FAMILY_INET 2
#define SA_FAMILY_INET6 10

static __always_inline int joins_denied_group(struct bpf_sockopt *ctx, int level, int optname)
{
	int v4 = level == SOL_IP &&
		 (optname == IP_ADD_MEMBERSHIP || optname == IP_ADD_SOURCE_MEMBERSHIP);
	int req = (level == SOL_IP || level == SOL_IPV6) &&
		  (optname == MCAST_JOIN_GROUP || optname == MCAST_JOIN_SOURCE_GROUP);
	int v6 = level == SOL_IPV6 && optname == IPV6_ADD_MEMBERSHIP;
	if (!v4 && !req && !v6)
		return 0;
	struct config *cfg = config_now();
	if (!cfg)
		return 1;
	if (no_policy(cfg))
		return 0;
	if (cfg->deny_all)
		return 1;
	// A value longer than a page: the program sees a copy of its first page at most, and the
	// kernel reads the caller's memory again, which another thread may change between the
	// two reads. No join option is that long: refused.
	if (ctx->optlen > PAGE_SIZE)
		return 1;
	__u8 *v = ctx->optval, *end = ctx->optval_end;
	__u32 g4 = 0, g6[4] = {};
	int family = v4 ? 4 : 6;
	if (req) {
		if (v + 10 > end)
			return 1;
		__u16 sa = *(__u16 *)(v + 8);
		if (sa == SA_FAMILY_INET) {
			if (v + 16 > end)
				return 1;
			__builtin_memcpy(&g4, v + 12, 4);
			family = 4;
		} else if (sa == SA_FAMILY_INET6) {
			if (v + 32 > end)
				return 1;
			__builtin_memcpy(g6, v + 16, 16);
		} else {
			return 1;
		}
	} else if (v4) {
		if (v + 4 > end)
			return 1;
		__builtin_memcpy(&g4, v, 4);
	} else {
		if (v + 16 > end)
			return 1;
		__builtin_memcpy(g6, v, 16);
	}
	if (family == 4)
		return !allowed4(g4);
	return !decide6(g6, 0, 0);
}

SEC("cgroup/setsockopt")
int ippin_setsockopt(struct bpf_sockopt *ctx)
{
	int level = ctx->level, optname = ctx->optname;
	if (!reroutes(level, optname, ctx->optlen) && !refused_under_policy(level, optname) &&
	    !joins_denied_group(ctx, level, optname)) {
		// A value longer than a page is not copied for programs; 0 tells the kernel to
		// use the caller's own buffer, as if no program ran (needed before Linux 6.5).
		if (ctx->optlen > PAGE_SIZE)
			ctx->optlen = 0;
		return 1;
	}
	struct event *e = new_event();
	if (!e)
		return 0;
	e->family = level == SOL_IPV6 ? 6 : 4;
	e->operation = 3;
	e->action = 1;
	e->dst_port = (__u16)optname; // the option, for the event (no destination)
	e->src_port = (__u16)level;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// Datagrams of a socket connected while its destination was allowed are sent with send(2),
// which no sock_addr hook sees: after a policy update denies that destination they would go
// on; so would a datagram corked (MSG_MORE, UDP_CORK) while its destination was allowed and
// sent later. Under a policy every UDP packet is decided here on its destination, and a
// connected socket's also on the socket's peer, with the rules above, and dropped (the
// sender gets EPERM) when denied. (Through an IPsec tunnel the packet's destination is the
// gateway's: allow it too.) TCP streams are told by the socket, not by the packet (an
// extension header the kernel inserts must not make a TCP segment look like something
// else), and decided by `tcp_egress` below. A non-TCP packet with IPv4 options (a
// source route) or an IPv6 routing header is dropped: its first hop is not where it is
// going. Sockets of any other kind than TCP streams and UDP datagrams can only have been
// made before the policy (`cgroup/sock_create`): their packets are dropped.
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

static __always_inline void report_packet(struct __sk_buff *skb, __u8 family, const void *dst,
					  __u16 port)
{
	// The packet's socket's cgroup: the task sending it may be another (a daemon
	// reinjecting queued packets, a worker finishing IPsec crypto), whose pid and name
	// are then not the session's: left empty.
	__u64 cgroup = bpf_skb_cgroup_id(skb);
	struct event *e = new_event_in(cgroup);
	if (!e)
		return;
	if (bpf_get_current_cgroup_id() != cgroup) {
		e->pid = 0;
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	}
	e->family = family;
	e->operation = 1; // a send
	e->action = 1;
	e->dst_port = bpf_ntohs(port);
	if (family == 4)
		__builtin_memcpy(e->dst, dst, 4);
	else
		__builtin_memcpy(e->dst, dst, 16);
	struct bpf_sock *sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	e->sock_type = sk ? sk->type : SOCK_DGRAM;
	bpf_ringbuf_submit(e, 0);
}

// A TCP segment: a connection the session accepted passes (the policy restricts what the
// session reaches, not who reaches it); one it connected (`outbound`) is decided again on
// its peer under the policy in force, and dropped when denied. The peer is the socket's,
// which the connect hook decided (after its rewrites of unspecified addresses). The sender
// sees the connection stall: nothing it sends arrives, and TCP gives up after its
// retransmissions. Its denial is reported once (again after a packet passes).
static __always_inline int tcp_egress(struct __sk_buff *skb, struct bpf_sock *sk,
				      const struct config *cfg)
{
	struct outbound *o = bpf_sk_storage_get(&outbound, sk, 0, 0);
	if (!o)
		return 1;
	int ok = !cfg->deny_all;
	__u8 family = 4;
	__u32 w[4] = {};
	if (ok && sk->family == AF_INET) {
		w[0] = sk->dst_ip4;
		ok = allowed4(w[0]);
	} else if (ok) {
		family = 6;
		w[0] = sk->dst_ip6[0];
		w[1] = sk->dst_ip6[1];
		w[2] = sk->dst_ip6[2];
		w[3] = sk->dst_ip6[3];
		ok = decide6(w, 0, 0);
	}
	if (ok) {
		// Written only when it changes: no store to the socket's storage per segment.
		if (o->reported)
			o->reported = 0;
		return 1;
	}
	if (!o->reported) {
		o->reported = 1;
		report_packet(skb, family, w, (__u16)sk->dst_port);
	}
	return 0;
}

SEC("cgroup_skb/egress")
int ippin_egress(struct __sk_buff *skb)
{
	struct config *cfg = config_now();
	if (!cfg)
		return 0;
	if (no_policy(cfg))
		return 1;
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1; // not a socket's packet: not the session's to decide
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1; // a request or time-wait socket: TCP
	if (sk->type == SOCK_STREAM && sk->protocol == IPPROTO_TCP)
		return tcp_egress(skb, sk, cfg);
	int udp = sk->type == SOCK_DGRAM &&
		  (sk->protocol == IPPROTO_UDP || sk->protocol == IPPROTO_UDPLITE);
	// Connected: the socket's state, not its port (a UDP socket may connect to port 0).
	int connected = udp && sk->state == BPF_TCP_ESTABLISHED;
	__u8 family = 0, proto = 0;
	__u16 port = 0;
	int plain = 0;
	__u32 w[4] = {}; // the packet's destination; IPv4 in w[0]
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl = 0;
		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1) ||
		    bpf_skb_load_bytes(skb, 16, w, 4))
			return 0;
		family = 4;
		plain = (vihl & 0x0f) == 5; // no IPv4 options (a source route among them)
		if (proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE)
			bpf_skb_load_bytes(skb, (__u32)(vihl & 0x0f) * 4 + 2, &port, 2);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &proto, 1) || bpf_skb_load_bytes(skb, 24, w, 16))
			return 0;
		family = 6;
		plain = proto != 43; // no routing header: the first hop is the destination
		if (proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE)
			bpf_skb_load_bytes(skb, 42, &port, 2);
	} else {
		return 1;
	}
	// The packet's destination always (a datagram corked with MSG_MORE while it was allowed
	// is sent later by a call no hook sees), and a connected socket's peer too, in the
	// socket's own family (an IPsec tunnel's outer packet can be of the other one).
	int ok = udp && plain && !cfg->deny_all &&
		 (family == 4 ? allowed4(w[0]) : decide6(w, 0, 0));
	if (ok && connected) {
		if (sk->family == AF_INET) {
			ok = allowed4(sk->dst_ip4);
		} else {
			__u32 p[4] = { sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2],
				       sk->dst_ip6[3] };
			ok = decide6(p, 0, 0);
		}
	}
	if (ok)
		return 1;
	report_packet(skb, family, w, port);
	return 0;
}

char LICENSE[] SEC("license") = "Apache-2.0";

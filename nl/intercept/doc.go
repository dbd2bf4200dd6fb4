// Package intercept transparently intercepts TCP connections arriving from
// LAN interfaces, so that a local relay can carry them on over MPTCP.
//
// [Install] puts one nftables table of family inet in place (one netlink
// batch, so a failure leaves nothing half-installed):
//
//	table inet mptcpd_relay {
//		chain prerouting {
//			type nat hook prerouting priority dstnat; policy accept;
//			iifname @interfaces meta l4proto tcp [ip saddr @sources_v4] goto redirect
//		}
//		chain redirect {
//			fib daddr type local return
//			ip daddr @exclude_v4 return
//			ip6 daddr @exclude_v6 return
//			counter redirect to :PORT
//		}
//	}
//
// REDIRECT (destination NAT to the incoming interface's own address) rather
// than TPROXY: the relay is an ordinary listener that needs no IP_TRANSPARENT,
// no policy routing and no special privileges, and REDIRECT works for IPv4
// and IPv6 from the same inet table. The cost is that the connection's
// destination is rewritten; conntrack still knows the original one, and
// [OriginalDst] asks it back with getsockopt SO_ORIGINAL_DST
// (IP6T_SO_ORIGINAL_DST for IPv6).
//
// Destinations local to the gateway (its own services, the relay port
// itself) are never redirected, nor are [Config.Exclude]d ones. Rules and
// sets carry comments beginning "mptcpd relay:", so that `nft list ruleset`
// says who made them.
//
// # Kernel details the caller must respect
//
//   - REDIRECT rewrites the destination to the first address of the incoming
//     interface in the packet's family; a LAN link without an address of that
//     family (or whose IPv6 address is still tentative) drops such
//     connections instead.
//   - SO_ORIGINAL_DST works on TCP sockets and on MPTCP sockets that fell
//     back to TCP; on a real MPTCP connection the kernel answers EOPNOTSUPP.
//     Listen for redirected connections with plain TCP
//     (net.ListenConfig.SetMultipathTCP(false)) so that MPTCP-capable LAN
//     clients fall back.
package intercept

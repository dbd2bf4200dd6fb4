// Package testbed builds a roaming laptop, its access points and a server
// in network namespaces, applies the events of a walk (carrier loss,
// renumbering, silent path death, black zones), and measures what a
// connection lived through: stalls, throughput, survival, verified bytes.
//
// # Topology
//
// One namespace per role, routed (no bridges, no NAT), IPv4 only:
//
//	laptop                 AP per link             server
//	wlan0 10.1.1.2 ─ lan 10.1.1.1 │ wan 10.2.1.1 ─ via-wlan0 10.2.1.2
//	wwan0 10.1.2.2 ─ lan 10.1.2.1 │ wan 10.2.2.1 ─ via-wwan0 10.2.2.2
//	                                                lo 10.3.0.1/32 (, .2, ...)
//
// Every link has its own AP and subnet; the laptop has a default route
// through each (Config's metrics), every AP forwards between its two
// sides and routes 10.3.0.0/24 to the server, and the server routes each
// laptop subnet back through its AP, so the server's addresses are
// reachable through every AP and a subflow's replies come back the way it
// went. A renumbered link takes the next 10.1.N.0/24.
//
// # Events
//
// Each is a method; all of them are ip commands in the namespaces, and
// take a few milliseconds. What the kernel sees:
//
//	Link.CarrierLoss(AtAP)     AP: ip link set lan down. The laptop's link stays UP
//	                           without LOWER_UP (NO-CARRIER); its addresses and
//	                           routes stay (flagged linkdown, still used unless
//	                           ignore_routes_with_linkdown): packets sent on it
//	                           are dropped by veth (tx_dropped).
//	Link.CarrierLoss(AtLaptop) laptop: ip link set wlan0 down. The link is not UP,
//	                           the AP's side loses LOWER_UP; the addresses stay,
//	                           the kernel deletes the routes through the link.
//	Link.CarrierBack(end)      link set up again, and the default route through
//	                           the link is put back (route replace), as DHCP would.
//	Link.Renumber()            AP: lan's address moves to the next 10.1.N.1/24;
//	                           server: the route back moves; laptop, in one ip
//	                           -batch: old address deleted, new one added, new
//	                           default route. Link flags do not change.
//	Link.Blackhole()           AP: ip rule iif lan blackhole, ip rule iif wan
//	                           blackhole (after the local table): every forwarded
//	                           packet is dropped without ICMP, links stay up and
//	                           the AP still answers ARP and pings to itself.
//	Link.Forward()             deletes those rules.
//	Testbed.BlackZone()        Blackhole on every link; EndBlackZone, Forward.
//	Link.SetShape(Shape)       tc qdisc replace ... root tbf on the four egresses
//	                           of the path (laptop, AP both sides, server).
//
// With Config.LAN a client sits behind the laptop (192.168.1.2 on lan0,
// the laptop 192.168.1.1), and with Config.Destination a host behind the
// server (203.0.113.2 on dst0, the server 203.0.113.1): the laptop is then
// a home gateway and the server a relay, and neither forwards, so the
// client reaches the destination only through a relay.
//
// What this kernel (6.18, see ../../shared/KERNEL.md) cannot do, and what
// stands in: no netem, so no random loss, and delay comes from a delay
// line (LinkConfig.Delay): the AP routes what it forwards through two TUN
// devices and this process holds each packet for the delay (without one,
// the only delay is tbf's queue, at most Shape.Latency, and an idle
// path's round trip is tens of microseconds); no gact, so no tc drop action (Blackhole uses ip
// rules); veth has no `ip link set carrier off`, so a carrier loss is
// the peer going down. A namespace may only pick a congestion control
// the host allows (here reno and bbr), so flows set theirs per socket
// (Config.Congestion, cubic unless told).
//
// Measured here: tbf passes ~96 % of its rate as TCP goodput; an
// undisturbed bulk TCP flow has gaps of ~30 ms (the queue) and, in slow
// start, one RTO (~230 ms) before 1.2 s, so measure after a 2 s warm-up.
//
// # Measurements
//
// Upload (bulk, laptop to server) and Interactive (a 64-byte message
// every 10 ms, echoed) open a connection, MPTCP unless FlowConfig.TCP,
// whose sockets this process makes inside the namespaces. The
// bytes are a seeded pseudo-random Pattern that the receiver regenerates
// and compares (Verifier), so corruption is caught at its byte. Stop
// returns a Result with the receive-side Trace, on which MaxGap is the
// stall within a window and Rates an I/O graph; Namespace.Links reads
// every link's counters. StaticEndpoints programs the in-kernel path
// manager with one endpoint per link, the kernel-only baseline.
//
// Example, a stall on a sudden carrier loss:
//
//	tb := testbed.New(t, testbed.Config{Links: []testbed.LinkConfig{
//		{Name: "wlan0", Shape: testbed.Shape{Rate: 50e6}},
//		{Name: "wwan0", Shape: testbed.Shape{Rate: 50e6}},
//	}})
//	_ = tb.StaticEndpoints(mptcp.FlagSubflow)
//	f, _ := tb.Upload(testbed.FlowConfig{})
//	time.Sleep(2 * time.Second)
//	at := time.Now()
//	_ = tb.Link("wlan0").CarrierLoss(testbed.AtAP)
//	time.Sleep(2 * time.Second)
//	r := f.Stop(5 * time.Second)
//	stall := r.Trace.MaxGap(at, at.Add(2*time.Second)).Len
package testbed

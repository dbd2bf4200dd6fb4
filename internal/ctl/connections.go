package ctl

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// `connections` is mptcpctl's own, not ip's: the kernel's MPTCP sockets
// and their subflows, read through sock_diag as `ss -M` does.

const connectionsLong = `connections lists the MPTCP connections of the namespace (-n) as the
kernel reports them (sock_diag): one line per connection with its token,
addresses, state, subflows (counting the initial one; out of the limit
plus one), bytes sent and received and retransmissions at the MPTCP level,
then one indented line per TCP subflow: addresses, the device (the one it
is bound to, else the one its packets are routed by, as "ip route get
REMOTE from LOCAL" says), the endpoint ids local/remote, "backup" when
either end asked for it, bytes, retransmitted segments and the smoothed
RTT.

Listeners are left out unless -a. -j prints one JSON array of connection
objects (every key always present), -p indents it. Subflows need
CAP_NET_ADMIN in the namespace: without it the kernel does not say which
TCP sockets are subflows.

When an mptcpd runs in the namespace (its socket in --state-dir, else
mptcpd.conf's state-dir, else /run/mptcpd-go), its view is added, never
replacing the kernel's: a subflow that is its doing ends in "by mptcpd"
(in the in-kernel mode it uses one of the daemon's endpoints, listed on a
line "mptcpd: endpoint ..."; in the userspace mode the plugin asked for
it), and in the userspace mode lines "mptcpd: ..." give the plugin, the
addresses announced either way, pending subflows and the plugin's latest
commands for the connection. -j adds an "mptcpd" key to connections and
subflows, null without a daemon.`

// connectionsCommand is `connections [-a] [--state-dir DIR]`.
func (r *runner) connectionsCommand() *cobra.Command {
	var all bool
	fl := &daemonFlags{}
	cmd := &cobra.Command{
		Use:               "connections [-a|--all] [--state-dir DIR]",
		Short:             "List MPTCP connections and their subflows",
		Long:              connectionsLong,
		Args:              cobra.ArbitraryArgs,
		RunE:              func(_ *cobra.Command, args []string) error { return r.connections(all, *fl, args) },
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "list listening sockets too")
	addStateDirFlag(cmd, fl)
	return cmd
}

// connections dumps the connections and prints them, with the daemon's
// view when one answers.
func (r *runner) connections(all bool, fl daemonFlags, args []string) error {
	if len(args) > 0 {
		return unknownCommandError(args[0])
	}
	b, err := r.open()
	if err != nil {
		return err
	}
	conns, err := b.Connections()
	if err != nil {
		return &ExitError{Code: ExitFailure, Msg: "Error: listing MPTCP connections: " + err.Error()}
	}
	if !all {
		kept := conns[:0]
		for _, c := range conns {
			if !c.Listening() {
				kept = append(kept, c)
			}
		}
		conns = kept
	}
	dv := r.connectionsView(fl)
	var out bytes.Buffer
	formatConnections(&out, conns, r.format(), subflowDevs{links: b, routes: b}, dv)
	return r.write(&out)
}

// OutputLinker asks the kernel's routing where packets go.
type OutputLinker interface {
	// OutputLink returns the index of the link a packet from src to dst
	// leaves by (`ip route get DST from SRC`), or 0 when there is no
	// route.
	OutputLink(src, dst netip.Addr) int
}

// subflowDevs names the device of a subflow: the one it is bound to, else
// the one the kernel routes its packets by. A subflow's local address
// does not tell: on a server every join to the listener's address has
// that address, whichever link it came in by.
type subflowDevs struct {
	links  LinkNamer
	routes OutputLinker
}

// dev is the subflow's device name, or "" when there is none.
func (d subflowDevs) dev(s *mptcpdiag.Subflow) string {
	index := s.IfIndex
	if index == 0 {
		index = d.routes.OutputLink(s.Local.Addr().Unmap(), s.Remote.Addr().Unmap())
	}
	if index == 0 {
		return ""
	}
	return devName(index, d.links)
}

// formatAddrPort is "ADDR:PORT", with brackets around an IPv6 address.
func formatAddrPort(ap netip.AddrPort) string {
	a := ap.Addr()
	s := formatAddr(a)
	if !a.Is4() {
		s = "[" + s + "]"
	}
	return s + ":" + strconv.Itoa(int(ap.Port()))
}

// formatConnections renders the connections: text, or with -j one JSON
// array (see writeConnectionJSON). dv is the daemon's view, nil when no
// daemon answered.
func formatConnections(b *bytes.Buffer, conns []mptcpdiag.Connection, f format, devs subflowDevs, dv *daemonView) {
	if f.JSON {
		w := newJSONWriter(b, f.Pretty)
		w.startArray()
		for i := range conns {
			writeConnectionJSON(w, &conns[i], devs, dv)
		}
		w.endArray()
		b.WriteByte('\n')
		return
	}
	for i := range conns {
		writeConnectionText(b, &conns[i], devs, dv)
	}
}

// writeConnectionText writes one connection's line and its subflows'
// lines:
//
//	token 86c266db 10.1.1.2:52401 -> 10.1.1.1:5000 ESTABLISHED subflows 2/3 sent 5 received 5 retrans 0
//	  10.1.1.2:52401 -> 10.1.1.1:5000 dev eth0 ids 0/0 sent 5 received 5 retrans 0 rtt 0.061ms
//
// and a listener as "listen 10.1.1.1:5000". With the daemon's view, a
// subflow that is its doing ends in "by mptcpd", and the daemon's lines
// (daemonView.writeText) follow the subflows.
func writeConnectionText(b *bytes.Buffer, c *mptcpdiag.Connection, devs subflowDevs, dv *daemonView) {
	if c.Listening() {
		fmt.Fprintf(b, "listen %s\n", formatAddrPort(c.Local))
		return
	}
	i := &c.Info
	fmt.Fprintf(b, "token %s %s -> %s %s", i.Token, formatAddrPort(c.Local), formatAddrPort(c.Remote), c.State)
	if i.Flags&mptcpdiag.InfoFallback != 0 {
		b.WriteString(" fallback")
	}
	fmt.Fprintf(b, " subflows %d/%d sent %d received %d retrans %d\n",
		i.TotalSubflows(), int(i.SubflowsMax)+1, i.BytesSent, i.BytesReceived, i.Retransmits)
	for j := range c.Subflows {
		s := &c.Subflows[j]
		fmt.Fprintf(b, "  %s -> %s", formatAddrPort(s.Local), formatAddrPort(s.Remote))
		if s.State != mptcpdiag.StateEstablished {
			fmt.Fprintf(b, " %s", s.State)
		}
		if dev := devs.dev(s); dev != "" {
			fmt.Fprintf(b, " dev %s", dev)
		}
		fmt.Fprintf(b, " ids %d/%d", s.LocalID, s.RemoteID)
		if s.Backup() {
			b.WriteString(" backup")
		}
		fmt.Fprintf(b, " sent %d received %d retrans %d rtt %.3fms",
			s.TCP.BytesSent, s.TCP.BytesReceived, s.TCP.TotalRetrans, float64(s.TCP.RTT.Microseconds())/1000)
		if dv != nil && dv.subflow(i.Token, s) != byNone {
			b.WriteString(" by mptcpd")
		}
		b.WriteByte('\n')
	}
	if dv != nil {
		dv.writeText(b, c, devs.links)
	}
}

// writeConnectionJSON writes the -j form of one connection. Every key is
// always present, in this order; a listener has token "00000000" and no
// subflows.
//
//	{"token": "86c266db", "family": "inet" | "inet6",
//	 "local_address", "local_port", "remote_address", "remote_port",
//	 "state": "ESTABLISHED", "listening": false, "fallback": false,
//	 "inode", "uid", "ifindex" (bound device, 0 for none),
//	 "subflows_total", "extra_subflows", "extra_subflows_max",
//	 "add_addr_signal", "add_addr_accepted", "add_addr_signal_max",
//	 "add_addr_accepted_max", "local_addr_used", "local_addr_max",
//	 "csum_enabled", "flags": ["remote_key_received", ...],
//	 "bytes_sent", "bytes_received", "bytes_acked", "bytes_retrans",
//	 "retransmits",
//	 "subflows": [{"local_address", "local_port", "remote_address",
//	     "remote_port", "state", "dev": "eth0" | null, "ifindex",
//	     "local_id", "remote_id", "backup", "flags": ["join_loc", ...],
//	     "remote_token", "bytes_sent", "bytes_received", "bytes_acked",
//	     "bytes_retrans", "total_retrans", "rtt_us", "rttvar_us",
//	     "min_rtt_us", "snd_cwnd",
//	     "mptcpd": null | "endpoint" | "plugin" | "none"}],
//	 "mptcpd": null | the daemon's view (daemonView.writeJSON)}
//
// The "mptcpd" keys are null when no daemon answered; a subflow's says
// whether it uses an endpoint of the daemon (in-kernel mode) or the
// plugin asked for it (userspace mode).
func writeConnectionJSON(w *jsonWriter, c *mptcpdiag.Connection, devs subflowDevs, dv *daemonView) {
	i := &c.Info
	w.startObject()
	w.stringField("token", i.Token.String())
	family := "inet"
	if c.Family == mptcpdiag.AF_INET6 {
		family = "inet6"
	}
	w.stringField("family", family)
	writeAddrPortJSON(w, "local", c.Local)
	writeAddrPortJSON(w, "remote", c.Remote)
	w.stringField("state", c.State.String())
	w.boolField("listening", c.Listening())
	w.boolField("fallback", i.Flags&mptcpdiag.InfoFallback != 0)
	w.uintField("inode", uint64(c.Inode))
	w.uintField("uid", uint64(c.UID))
	w.intField("ifindex", int64(c.IfIndex))
	w.uintField("subflows_total", uint64(i.TotalSubflows()))
	for _, f := range []struct {
		key string
		v   uint8
	}{
		{"extra_subflows", i.Subflows},
		{"extra_subflows_max", i.SubflowsMax},
		{"add_addr_signal", i.AddAddrSignal},
		{"add_addr_accepted", i.AddAddrAccepted},
		{"add_addr_signal_max", i.AddAddrSignalMax},
		{"add_addr_accepted_max", i.AddAddrAcceptedMax},
		{"local_addr_used", i.LocalAddrUsed},
		{"local_addr_max", i.LocalAddrMax},
	} {
		w.uintField(f.key, uint64(f.v))
	}
	w.boolField("csum_enabled", i.CsumEnabled)
	writeNamesJSON(w, "flags", i.Flags.Names())
	w.uintField("bytes_sent", i.BytesSent)
	w.uintField("bytes_received", i.BytesReceived)
	w.uintField("bytes_acked", i.BytesAcked)
	w.uintField("bytes_retrans", i.BytesRetrans)
	w.uintField("retransmits", uint64(i.Retransmits))
	w.name("subflows")
	w.startArray()
	for j := range c.Subflows {
		writeSubflowJSON(w, c, &c.Subflows[j], devs, dv)
	}
	w.endArray()
	if dv == nil || c.Listening() {
		w.nullField("mptcpd")
	} else {
		w.name("mptcpd")
		dv.writeJSON(w, c, devs.links)
	}
	w.endObject()
}

func writeSubflowJSON(w *jsonWriter, c *mptcpdiag.Connection, s *mptcpdiag.Subflow, devs subflowDevs, dv *daemonView) {
	w.startObject()
	writeAddrPortJSON(w, "local", s.Local)
	writeAddrPortJSON(w, "remote", s.Remote)
	w.stringField("state", s.State.String())
	if dev := devs.dev(s); dev != "" {
		w.stringField("dev", dev)
	} else {
		w.nullField("dev")
	}
	w.intField("ifindex", int64(s.IfIndex))
	w.uintField("local_id", uint64(s.LocalID))
	w.uintField("remote_id", uint64(s.RemoteID))
	w.boolField("backup", s.Backup())
	writeNamesJSON(w, "flags", s.Flags.Names())
	w.stringField("remote_token", s.RemoteToken.String())
	t := &s.TCP
	w.uintField("bytes_sent", t.BytesSent)
	w.uintField("bytes_received", t.BytesReceived)
	w.uintField("bytes_acked", t.BytesAcked)
	w.uintField("bytes_retrans", t.BytesRetrans)
	w.uintField("total_retrans", uint64(t.TotalRetrans))
	w.uintField("rtt_us", uint64(t.RTT.Microseconds()))
	w.uintField("rttvar_us", uint64(t.RTTVar.Microseconds()))
	w.uintField("min_rtt_us", uint64(t.MinRTT.Microseconds()))
	w.uintField("snd_cwnd", uint64(t.SndCwnd))
	if dv == nil {
		w.nullField("mptcpd")
	} else {
		w.stringField("mptcpd", dv.subflow(c.Info.Token, s))
	}
	w.endObject()
}

// writeAddrPortJSON writes "PREFIX_address" and "PREFIX_port".
func writeAddrPortJSON(w *jsonWriter, prefix string, ap netip.AddrPort) {
	w.stringField(prefix+"_address", formatAddr(ap.Addr()))
	w.uintField(prefix+"_port", uint64(ap.Port()))
}

// writeNamesJSON writes an array of names, [] for none.
func writeNamesJSON(w *jsonWriter, key string, names []string) {
	w.name(key)
	w.startArray()
	for _, n := range names {
		w.stringValue(n)
	}
	w.endArray()
}

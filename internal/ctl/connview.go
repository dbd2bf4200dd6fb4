package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// daemonView is what the namespace's mptcpd says of the connections, set
// beside the kernel's list, never instead of it.
type daemonView struct {
	mode, plugin string
	owned        map[mptcp.ID]mptcp.Endpoint // in-kernel mode: the daemon's endpoints
	conns        map[mptcp.Token]*control.Connection
}

// connectionsView asks the daemon, if one runs, for its view. No daemon
// is no error: the kernel's list is complete without it. Any other
// failure is noted on stderr and leaves the view out.
func (r *runner) connectionsView(fl daemonFlags) *daemonView {
	c, err := r.dialDaemon(fl)
	if errors.Is(err, control.ErrNotRunning) {
		return nil
	}
	var cs control.Connections
	if err == nil {
		cs, err = c.Connections()
		c.Close()
	}
	if err != nil {
		fmt.Fprintf(r.env.Stderr, "Warning: without mptcpd's view: %v\n", err)
		return nil
	}
	return newDaemonView(cs)
}

func newDaemonView(cs control.Connections) *daemonView {
	v := &daemonView{mode: cs.Mode, plugin: cs.Plugin, owned: map[mptcp.ID]mptcp.Endpoint{}, conns: map[mptcp.Token]*control.Connection{}}
	for _, e := range cs.Owned {
		if k, err := e.Kernel(); err == nil {
			v.owned[k.ID] = k
		}
	}
	for i := range cs.Connections {
		if tok, err := control.ParseToken(cs.Connections[i].Token); err == nil {
			v.conns[tok] = &cs.Connections[i]
		}
	}
	return v
}

// What the daemon had to do with a subflow (JSON "mptcpd" of a subflow).
const (
	byEndpoint = "endpoint" // in-kernel: it uses an endpoint of the daemon
	byPlugin   = "plugin"   // userspace: the plugin asked for it
	byNone     = "none"
)

// subflow says what the daemon had to do with subflow s of connection
// tok.
func (v *daemonView) subflow(tok mptcp.Token, s *mptcpdiag.Subflow) string {
	if e, ok := v.owned[s.LocalID]; ok && s.LocalID != 0 && e.Addr == s.Local.Addr().Unmap() {
		return byEndpoint
	}
	if c := v.conns[tok]; c != nil {
		for _, cmd := range c.Commands {
			if cmd.Op == control.OpCreateSubflow && cmd.Error == "" &&
				cmd.Local.Addr().Unmap() == s.Local.Addr().Unmap() && sameAddrPort(cmd.Remote, s.Remote) {
				return byPlugin
			}
		}
	}
	return byNone
}

func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// endpointsUsed are the daemon's endpoints that subflows of c use.
func (v *daemonView) endpointsUsed(c *mptcpdiag.Connection) []mptcp.Endpoint {
	var out []mptcp.Endpoint
	seen := map[mptcp.ID]bool{}
	for i := range c.Subflows {
		s := &c.Subflows[i]
		if v.subflow(c.Info.Token, s) == byEndpoint && !seen[s.LocalID] {
			seen[s.LocalID] = true
			out = append(out, v.owned[s.LocalID])
		}
	}
	return out
}

// writeText writes the daemon's lines of connection c:
//
//	mptcpd: endpoint 1 10.0.0.2 dev eth0, endpoint 2 10.1.0.2 dev wlan0
//	mptcpd: plugin sspi; announced 10.0.2.1 id 2; peer announced 10.0.3.1:5000 id 1
//	mptcpd: pending subflow 10.0.2.2 -> 10.0.1.1:5000 backup
//	mptcpd: 12:04:05.123 create subflow id 2 10.0.2.2 -> 10.0.1.1:5000
func (v *daemonView) writeText(b *bytes.Buffer, c *mptcpdiag.Connection, links LinkNamer) {
	if v.mode == control.ModeInKernel {
		var parts []string
		for _, e := range v.endpointsUsed(c) {
			var line bytes.Buffer
			writeEndpointText(&line, e, links)
			parts = append(parts, "endpoint "+strings.TrimSpace(line.String()))
		}
		if len(parts) > 0 {
			fmt.Fprintf(b, "  mptcpd: %s\n", strings.Join(parts, ", "))
		}
		return
	}
	dc := v.conns[c.Info.Token]
	if dc == nil {
		fmt.Fprintf(b, "  mptcpd: not in plugin %s's table\n", v.plugin)
		return
	}
	line := "plugin " + v.plugin
	for _, a := range dc.Announced {
		line += fmt.Sprintf("; announced %s id %d", endpointAddr(a), a.ID)
	}
	for _, p := range dc.PeerAddrs {
		line += fmt.Sprintf("; peer announced %s id %d", formatAddrPort(p.Address), p.ID)
	}
	fmt.Fprintf(b, "  mptcpd: %s\n", line)
	for _, s := range dc.Subflows {
		if s.Pending {
			fmt.Fprintf(b, "  mptcpd: pending subflow %s -> %s", formatAddr(s.Local.Addr()), formatAddrPort(s.Remote))
			if s.Backup {
				b.WriteString(" backup")
			}
			b.WriteByte('\n')
		}
	}
	for _, cmd := range dc.Commands {
		fmt.Fprintf(b, "  mptcpd: %s %s\n", cmd.Time.Format("15:04:05.000"), cmd)
	}
}

// endpointAddr is "ADDR" or "ADDR port N".
func endpointAddr(e control.Endpoint) string {
	if e.Port != 0 {
		return fmt.Sprintf("%s port %d", formatAddr(e.Address), e.Port)
	}
	return formatAddr(e.Address)
}

// writeJSON writes the "mptcpd" object of connection c, every key always
// present:
//
//	{"mode": "in-kernel" | "userspace", "plugin": "sspi" | "",
//	 "known": the userspace mode's table has c (false in the in-kernel mode),
//	 "endpoints": [the daemon's endpoints c's subflows use, as endpoint show -j],
//	 "announced": [{"address", "port", "id"}],
//	 "peer_addresses": [{"address", "port", "id"}],
//	 "pending_subflows": [{"local_address", "remote_address", "remote_port", "local_id", "backup"}],
//	 "commands": [{"time", "op", "id", "local_address", "local_port",
//	               "remote_address", "remote_port", "error"}]}
func (v *daemonView) writeJSON(w *jsonWriter, c *mptcpdiag.Connection, links LinkNamer) {
	w.startObject()
	w.stringField("mode", v.mode)
	w.stringField("plugin", v.plugin)
	dc := v.conns[c.Info.Token]
	if dc == nil {
		dc = &control.Connection{}
	}
	w.boolField("known", v.conns[c.Info.Token] != nil)
	w.name("endpoints")
	w.startArray()
	for _, e := range v.endpointsUsed(c) {
		writeEndpointJSON(w, e, links)
	}
	w.endArray()
	w.name("announced")
	w.startArray()
	for _, a := range dc.Announced {
		w.startObject()
		w.stringField("address", formatAddr(a.Address))
		w.uintField("port", uint64(a.Port))
		w.uintField("id", uint64(a.ID))
		w.endObject()
	}
	w.endArray()
	w.name("peer_addresses")
	w.startArray()
	for _, p := range dc.PeerAddrs {
		w.startObject()
		w.stringField("address", formatAddr(p.Address.Addr()))
		w.uintField("port", uint64(p.Address.Port()))
		w.uintField("id", uint64(p.ID))
		w.endObject()
	}
	w.endArray()
	w.name("pending_subflows")
	w.startArray()
	for _, s := range dc.Subflows {
		if !s.Pending {
			continue
		}
		w.startObject()
		w.stringField("local_address", formatAddr(s.Local.Addr()))
		writeAddrPortJSON(w, "remote", s.Remote)
		w.uintField("local_id", uint64(s.LocalID))
		w.boolField("backup", s.Backup)
		w.endObject()
	}
	w.endArray()
	w.name("commands")
	w.startArray()
	for _, cmd := range dc.Commands {
		w.startObject()
		w.stringField("time", cmd.Time.UTC().Format("2006-01-02T15:04:05.000000Z"))
		w.stringField("op", cmd.Op)
		w.uintField("id", uint64(cmd.ID))
		writeOptionalAddrPortJSON(w, "local", cmd.Local)
		writeOptionalAddrPortJSON(w, "remote", cmd.Remote)
		w.stringField("error", cmd.Error)
		w.endObject()
	}
	w.endArray()
	w.endObject()
}

// writeOptionalAddrPortJSON is writeAddrPortJSON with null for no
// address.
func writeOptionalAddrPortJSON(w *jsonWriter, prefix string, ap netip.AddrPort) {
	if ap.Addr().IsValid() {
		writeAddrPortJSON(w, prefix, ap)
		return
	}
	w.nullField(prefix + "_address")
	w.nullField(prefix + "_port")
}

package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/health"
)

// controlPlane serves the control socket (internal/control) for the
// engine. Status, explain and connections answer from the snapshot the
// engine loop publishes after each pass, so no client ever waits for the
// loop or makes it wait; a reload is a request the loop answers; events
// come from the loop and, in the userspace mode, from the taps on the
// mptcp_pm events and the plugin's commands.
type controlPlane struct {
	srv       *control.Server
	path      string // the socket's, known before srv serves
	version   string
	pid       int
	started   time.Time
	stateFile string // the in-kernel mode's; "" in the userspace one
	problems  *problemLog
	reloads   chan chan reloadOutcome
	snap      atomic.Pointer[snapshot]
}

// reloadOutcome answers a reload request.
type reloadOutcome struct {
	reloaded control.Reloaded
	err      error
}

// snapshot is what the engine loop publishes: immutable once stored.
type snapshot struct {
	at       time.Time // the end of the pass; zero before the first
	settings *settings
	user     *userspaceMode // the userspace mode; nil in the in-kernel one
	network  pm.Network
	plan     pm.Plan
	kernel   []mptcp.Endpoint // the in-kernel mode's table after the pass
	owned    []pm.Owned
	kept     []mptcp.Endpoint // kept through an outage
	inDoubt  []mptcp.Endpoint // deleted just before it
	limits   mptcp.Limits     // the kernel's, as last read or written
	admin    []string         // managed limits an administrator holds
	counters control.Counters
	health   []health.Verdict // by link index; nil without path health
}

// startControl serves the control socket of the calling thread's network
// namespace in the state directory. It fails when another daemon answers
// there.
func startControl(s *settings, version string, problems *problemLog, log *slog.Logger) (*controlPlane, error) {
	gid, err := lookupGroup(s.conf.ControlGroup)
	if err != nil {
		return nil, err
	}
	path, err := control.SocketPath(s.conf.StateDir, 0)
	if err != nil {
		return nil, err
	}
	c := &controlPlane{path: path, version: version, pid: os.Getpid(), started: time.Now(), problems: problems,
		reloads: make(chan chan reloadOutcome)}
	if s.conf.InKernelPM() {
		if c.stateFile, err = pm.StatePath(s.conf.StateDir); err != nil {
			return nil, err
		}
	}
	c.snap.Store(&snapshot{settings: s})
	if c.srv, err = control.Listen(control.Config{Path: path, Group: gid, Backend: c, Log: log}); err != nil {
		return nil, err
	}
	return c, nil
}

// lookupGroup resolves control-group: a number, or a name from the group
// database; "" is -1, root only.
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("control-group=%s: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

func (c *controlPlane) close() error {
	if c == nil {
		return nil
	}
	return c.srv.Close()
}

// publish stores what status and explain show from now on.
func (c *controlPlane) publish(sn *snapshot) {
	if c != nil {
		c.snap.Store(sn)
	}
}

// reloadRequests are the reloads asked for through the socket; nil (never)
// without a control plane.
func (c *controlPlane) reloadRequests() <-chan chan reloadOutcome {
	if c == nil {
		return nil
	}
	return c.reloads
}

// watched reports whether a client watches the events: when none does,
// they are not built.
func (c *controlPlane) watched() bool { return c != nil && c.srv.Watched() }

func (c *controlPlane) emit(ev control.Event) {
	if c != nil {
		c.srv.Emit(ev)
	}
}

func modeOf(s *settings) string {
	if s.conf.InKernelPM() {
		return control.ModeInKernel
	}
	return control.ModeUserspace
}

// Status is control.Backend's.
func (c *controlPlane) Status() control.Status {
	sn := c.snap.Load()
	conf := sn.settings.conf
	st := control.Status{
		Version: c.version, PID: c.pid, Started: c.started, Mode: modeOf(sn.settings),
		Config: conf.Source, Policy: sn.settings.policy.Source, StateFile: c.stateFile, Socket: c.path,
		LastPass: sn.at, Links: []control.Link{}, Endpoints: []control.Wanted{},
		Problems: c.problems.list(), Counters: sn.counters,
	}
	for _, l := range sn.network.Links {
		cl := control.LinkFrom(l)
		if i := slices.IndexFunc(sn.health, func(v health.Verdict) bool { return v.Link == l.Index }); i >= 0 {
			v := sn.health[i]
			cl.Health = &control.Health{State: v.State.String(), Why: v.Why, Since: v.Since, Until: v.Until}
		}
		st.Links = append(st.Links, cl)
	}
	userMode := st.Mode == control.ModeUserspace
	for _, w := range sn.plan.Endpoints {
		want := control.Wanted{Endpoint: control.EndpointFrom(w.Endpoint, w.Link)}
		if !userMode {
			want.ID, want.Kernel = sn.kernelState(w.Endpoint)
		}
		st.Endpoints = append(st.Endpoints, want)
	}
	if userMode {
		st.Plugin = conf.PathManager
		st.Userspace = &control.Userspace{}
		if sn.user != nil {
			u := sn.user.eng.Stats()
			*st.Userspace = control.Userspace{Connections: u.Connections, Events: u.Events, EventsLost: u.EventsLost,
				Resyncs: u.Resyncs, CommandErrors: u.CommandErrors}
		}
		return st
	}
	k := &control.Kernel{Owned: []control.Endpoint{}, Foreign: []control.Endpoint{}, Limits: control.LimitsFrom(sn.limits),
		WantedLimits: control.LimitsFrom(sn.plan.Limits), AdminLimits: append([]string{}, sn.admin...),
		Kept: []int{}, InDoubt: []control.Endpoint{}}
	for _, e := range sn.kept {
		k.Kept = append(k.Kept, int(e.ID))
	}
	for _, e := range sn.inDoubt {
		k.InDoubt = append(k.InDoubt, control.EndpointFrom(e, ""))
	}
	for _, e := range sn.kernel {
		ce := control.EndpointFrom(e, sn.linkName(e.IfIndex))
		if sn.owns(e) {
			k.Owned = append(k.Owned, ce)
		} else {
			k.Foreign = append(k.Foreign, ce)
		}
	}
	st.Kernel = k
	return st
}

// owns reports whether the daemon owns kernel endpoint e: the record has
// its id and address.
func (sn *snapshot) owns(e mptcp.Endpoint) bool {
	for _, o := range sn.owned {
		if o.ID == e.ID && o.Addr == e.Addr.Unmap() {
			return true
		}
	}
	return false
}

// kernelState compares wanted endpoint w with the kernel's table: the id
// of the endpoint on its address, and control.Wanted.Kernel's word.
func (sn *snapshot) kernelState(w mptcp.Endpoint) (mptcp.ID, string) {
	var found *mptcp.Endpoint
	for i := range sn.kernel {
		k := &sn.kernel[i]
		if k.Addr.Unmap() == w.Addr.Unmap() && (found == nil || k.Port == w.Port) {
			found = k
		}
	}
	switch {
	case found == nil:
		return 0, "missing"
	case !sn.owns(*found):
		return found.ID, "held"
	case found.Flags != w.Flags || found.Port != w.Port || found.IfIndex != w.IfIndex:
		return found.ID, "differs"
	}
	return found.ID, "present"
}

// linkName names link index of the last pass's network, "" if none.
func (sn *snapshot) linkName(index int) string {
	if l, ok := sn.network.Link(index); ok {
		return l.Name
	}
	return ""
}

// Explain is control.Backend's: the plan of the last pass, with the
// kernel's table and room as that pass saw them.
func (c *controlPlane) Explain() control.Explain {
	sn := c.snap.Load()
	s := sn.settings
	x := control.ExplainFrom(s.policy, sn.network, sn.plan)
	x.Mode, x.Why, x.Config, x.ConfigFound = modeOf(s), s.policyWhy, s.configPath, s.conf.Source == s.configPath
	if x.Mode == control.ModeUserspace {
		x.Plugin = s.conf.PathManager
		x.Capacity = mptcp.MPTCP_PM_MAX_ADDR_ID
		return x
	}
	// As mptcpctl policy explain counts them, with the daemon's own
	// knowledge of what it owns: foreign endpoints on addresses that no
	// decision wants take room the plan cannot use.
	wanted := make(map[netip.Addr]bool)
	for _, d := range sn.plan.Decisions {
		if d.Verdict == pm.VerdictEndpoint || d.Verdict == pm.VerdictOverLimit {
			wanted[d.Address.Addr().Unmap()] = true
		}
	}
	x.Kernel = []control.Endpoint{}
	for _, e := range sn.kernel {
		x.Kernel = append(x.Kernel, control.EndpointFrom(e, sn.linkName(e.IfIndex)))
		if !sn.owns(e) && !wanted[e.Addr.Unmap()] {
			x.Foreign++
		}
	}
	x.Capacity = max(0, pm.MaxEndpoints-x.Foreign)
	x.KernelLimits = control.LimitsFrom(sn.limits)
	return x
}

// Connections is control.Backend's: the endpoints the daemon owns, and
// in the userspace mode its connection table with the plugin's commands.
func (c *controlPlane) Connections() control.Connections {
	sn := c.snap.Load()
	out := control.Connections{Mode: modeOf(sn.settings), Owned: []control.Endpoint{}, Connections: []control.Connection{}}
	if out.Mode == control.ModeInKernel {
		for _, e := range sn.kernel {
			if sn.owns(e) {
				out.Owned = append(out.Owned, control.EndpointFrom(e, sn.linkName(e.IfIndex)))
			}
		}
		return out
	}
	out.Plugin = sn.settings.conf.PathManager
	if sn.user == nil {
		return out
	}
	for _, ci := range sn.user.eng.Connections() {
		cc := control.Connection{Token: ci.Token.String(), Local: ci.Local, Remote: ci.Remote, ServerSide: ci.ServerSide,
			Established: ci.Established, PeerAddrs: []control.PeerAddr{}, Subflows: []control.Subflow{},
			Announced: []control.Endpoint{}, Commands: sn.user.commands.of(ci.Token)}
		for _, p := range ci.PeerAddrs {
			cc.PeerAddrs = append(cc.PeerAddrs, control.PeerAddr{ID: p.ID, Address: p.Addr})
		}
		for _, s := range ci.Subflows {
			cc.Subflows = append(cc.Subflows, control.SubflowFrom(s))
		}
		for _, a := range ci.Announced {
			cc.Announced = append(cc.Announced, control.EndpointFrom(
				mptcp.Endpoint{ID: a.ID, Addr: a.Addr, Port: a.Port, Flags: mptcp.FlagSignal | a.Flags&mptcp.FlagBackup, IfIndex: a.IfIndex}, a.Link))
		}
		out.Connections = append(out.Connections, cc)
	}
	return out
}

// Reload is control.Backend's: it asks the engine loop, which reloads as
// for SIGHUP and answers after the pass that follows.
func (c *controlPlane) Reload(ctx context.Context) (control.Reloaded, error) {
	req := make(chan reloadOutcome, 1)
	select {
	case c.reloads <- req:
	case <-ctx.Done():
		return control.Reloaded{}, ctx.Err()
	}
	select {
	case o := <-req:
		return o.reloaded, o.err
	case <-ctx.Done():
		return control.Reloaded{}, ctx.Err()
	}
}

// networkEvent reports a monitor event; st is the state before it, which
// names the link of a deleted address.
func (c *controlPlane) networkEvent(ev netmon.Event, st *netmon.State) {
	if !c.watched() {
		return
	}
	out := control.Event{Text: ev.String()}
	linkName := func(index int) string {
		if l, ok := st.Link(index); ok {
			return l.Name
		}
		return ""
	}
	// netmon prints "dev INDEX": the name reads better.
	named := func(index int) string {
		name := linkName(index)
		if name != "" {
			out.Text = strings.Replace(out.Text, fmt.Sprintf(" dev %d ", index), " dev "+name+" ", 1)
		}
		return name
	}
	switch ev := ev.(type) {
	case netmon.LinkEvent:
		out.Kind, out.Op, out.Link = control.KindLink, ev.Op.String(), ev.Link.Name
	case netmon.AddrEvent:
		out.Kind, out.Op, out.Link, out.Address = control.KindAddr, ev.Op.String(), named(ev.Addr.LinkIndex), ev.Addr.Prefix.String()
	case netmon.RouteEvent:
		out.Kind, out.Op, out.Link = control.KindRoute, ev.Op.String(), named(ev.Route.LinkIndex)
	case netmon.ResyncNeeded:
		out.Kind = control.KindResync
	case netmon.Synced:
		out.Kind = control.KindSynced
	}
	c.emit(out)
}

// resultEvents reports the writes of one reconcile.
func (c *controlPlane) resultEvents(res *pm.Result, n pm.Network) {
	if !c.watched() {
		return
	}
	for _, w := range []struct {
		op  string
		eps []mptcp.Endpoint
	}{{"deleted", res.Deleted}, {"flags", res.FlagsChanged}, {"added", res.Added}, {"adopted", res.Adopted}} {
		for _, e := range w.eps {
			dev := ""
			if l, ok := n.Link(e.IfIndex); ok {
				dev = l.Name
			}
			c.emit(control.Event{Kind: control.KindEndpoint, Op: w.op, Link: dev, Address: e.Addr.String(),
				Text: "endpoint " + w.op + " " + endpointWords(e, dev)})
		}
	}
	if l := res.LimitsSet; l.Subflows != nil || l.AddAddrAccepted != nil {
		var words []string
		if l.Subflows != nil {
			words = append(words, fmt.Sprintf("subflows %d", *l.Subflows))
		}
		if l.AddAddrAccepted != nil {
			words = append(words, fmt.Sprintf("add_addr_accepted %d", *l.AddAddrAccepted))
		}
		c.emit(control.Event{Kind: control.KindLimits, Op: "set", Text: "limits set " + strings.Join(words, " ")})
	}
}

// endpointWords is an endpoint as `ip mptcp endpoint show` prints it,
// without the trailing space.
func endpointWords(e mptcp.Endpoint, dev string) string {
	s := e.Addr.String()
	if e.Port != 0 {
		s += fmt.Sprintf(" port %d", e.Port)
	}
	if e.ID != 0 {
		s += fmt.Sprintf(" id %d", e.ID)
	}
	if f := e.Flags.String(); f != "" {
		s += " " + f
	}
	if dev != "" {
		s += " dev " + dev
	} else if e.IfIndex != 0 {
		s += fmt.Sprintf(" dev if%d", e.IfIndex)
	}
	return s
}

// mptcpEvents reports the kernel's mptcp_pm events (userspace mode).
func (c *controlPlane) mptcpEvents(evs []mptcp.Event) {
	if !c.watched() {
		return
	}
	sn := c.snap.Load()
	for i := range evs {
		ev := &evs[i]
		out := control.Event{Kind: control.KindMPTCP, Op: ev.Type.String(), Text: mptcpEventText(ev, sn.linkName)}
		if ev.Has(mptcp.AttrToken) {
			out.Token = ev.Token.String()
		}
		if ev.Has(mptcp.AttrIfIndex) {
			out.Link = sn.linkName(ev.IfIndex)
		}
		c.emit(out)
	}
}

// mptcpEventText is one event in words: "mptcp SUB_ESTABLISHED token
// 7ab06eec 10.1.2.2:41331 -> 10.1.1.1:5000 locid 1 remid 0 dev eth1".
func mptcpEventText(ev *mptcp.Event, linkName func(int) string) string {
	var b strings.Builder
	b.WriteString("mptcp " + ev.Type.String())
	if ev.Has(mptcp.AttrToken) {
		fmt.Fprintf(&b, " token %s", ev.Token)
	}
	src := ev.Has(mptcp.AttrSaddr4) || ev.Has(mptcp.AttrSaddr6)
	dst := ev.Has(mptcp.AttrDaddr4) || ev.Has(mptcp.AttrDaddr6)
	if src {
		fmt.Fprintf(&b, " %s", netip.AddrPortFrom(ev.Saddr, ev.Sport))
	}
	if src && dst {
		b.WriteString(" ->")
	}
	if dst {
		fmt.Fprintf(&b, " %s", netip.AddrPortFrom(ev.Daddr, ev.Dport))
	}
	if ev.Has(mptcp.AttrLocalID) {
		fmt.Fprintf(&b, " locid %d", ev.LocalID)
	}
	if ev.Has(mptcp.AttrRemoteID) {
		fmt.Fprintf(&b, " remid %d", ev.RemoteID)
	}
	if ev.Has(mptcp.AttrBackup) && ev.Backup {
		b.WriteString(" backup")
	}
	if ev.Has(mptcp.AttrIfIndex) && ev.IfIndex != 0 {
		if name := linkName(ev.IfIndex); name != "" {
			b.WriteString(" dev " + name)
		} else {
			fmt.Fprintf(&b, " dev if%d", ev.IfIndex)
		}
	}
	if ev.Has(mptcp.AttrError) && ev.Error != 0 {
		fmt.Fprintf(&b, " error %d", ev.Error)
	}
	return b.String()
}

// commandEvent reports a command of the plugin (userspace mode).
func (c *controlPlane) commandEvent(plugin string, tok mptcp.Token, cmd control.Command) {
	if !c.watched() {
		return
	}
	s := fmt.Sprintf("command by %s token %s: %s", plugin, tok, cmd)
	c.emit(control.Event{Time: cmd.Time, Kind: control.KindCommand, Op: cmd.Op, Token: tok.String(), Text: s})
}

// healthEvents reports path health verdicts that changed.
func (c *controlPlane) healthEvents(vs []health.Verdict) {
	if !c.watched() {
		return
	}
	for _, v := range vs {
		text := fmt.Sprintf("path %s %s: %s", v.Name, v.State, v.Why)
		if v.State == health.Failed {
			text += fmt.Sprintf("; probation in %s", v.Hold)
		}
		c.emit(control.Event{Time: v.Since, Kind: control.KindHealth, Op: v.State.String(), Link: v.Name, Text: text})
	}
}

// reloadEvent reports a reload and how it ended.
func (c *controlPlane) reloadEvent(err error) {
	if !c.watched() {
		return
	}
	if err != nil {
		c.emit(control.Event{Kind: control.KindReload, Op: "failed", Text: "reload failed: " + err.Error()})
		return
	}
	sn := c.snap.Load()
	c.emit(control.Event{Kind: control.KindReload, Op: "ok",
		Text: fmt.Sprintf("reload ok: config %s, policy %s", sn.settings.conf.Source, sn.settings.policy.Source)})
}

package integration

// Parity of `mptcpctl monitor` with `ip mptcp monitor`: both watch the same
// namespace while real MPTCP connections come and go, and must print the
// same lines in the same order; `mptcpctl -j monitor` must print the same
// events as JSON objects.

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// monWait bounds each wait for something the kernel or a helper process
// does; generous because the test machine may be loaded.
const monWait = 30 * time.Second

// monQuiet is how long the monitors must stay silent before the test takes
// their output as complete.
const monQuiet = time.Second

// monTopology is a client and a server namespace joined by two veth links:
// c1/s1 10.0.1.0/24 (and 2001:db8:1::/64 when IPv6 works), c2/s2
// 10.0.2.0/24. The server announces 10.0.2.1; the client opens subflows from
// 10.0.2.2 bound to c2.
type monTopology struct {
	client, server *nstest.NS
	v6             bool
}

func newMonTopology(t *testing.T) *monTopology {
	t.Helper()
	top := &monTopology{client: nstest.New(t), server: nstest.New(t)}
	c, s := top.client, top.server
	nstest.Veth(t, c, "c1", s, "s1")
	nstest.Veth(t, c, "c2", s, "s2")
	c.MustRun("ip", "addr", "add", "10.0.1.2/24", "dev", "c1")
	c.MustRun("ip", "addr", "add", "10.0.2.2/24", "dev", "c2")
	s.MustRun("ip", "addr", "add", "10.0.1.1/24", "dev", "s1")
	s.MustRun("ip", "addr", "add", "10.0.2.1/24", "dev", "s2")
	_, e1, err1 := c.Run("ip", "addr", "add", "2001:db8:1::2/64", "dev", "c1", "nodad")
	_, e2, err2 := s.Run("ip", "addr", "add", "2001:db8:1::1/64", "dev", "s1", "nodad")
	top.v6 = err1 == nil && err2 == nil
	if !top.v6 {
		t.Logf("no IPv6 link (%v %s %v %s): IPv4 only", err1, e1, err2, e2)
	}
	for _, ns := range []*nstest.NS{c, s} {
		ns.MustRun("ip", "mptcp", "limits", "set", "subflows", "4", "add_addr_accepted", "4")
	}
	s.MustRun("ip", "mptcp", "endpoint", "add", "10.0.2.1", "signal")               // id 1
	c.MustRun("ip", "mptcp", "endpoint", "add", "10.0.2.2", "dev", "c2", "subflow") // id 1
	return top
}

// monSide is the three monitors of one namespace.
type monSide struct {
	name             string
	ns               *nstest.NS
	ip, ctl, ctlJSON *background
	sync             map[string]bool // tokens of the sync connections, left out of the comparison
}

func startMonSide(t *testing.T, name string, ns *nstest.NS, ctl mptcpTool) *monSide {
	t.Helper()
	ctx := context.Background() // background.stop ends them
	m := &monSide{
		name: name,
		ns:   ns,
		ip:   start(t, "ip monitor in "+name, ipTool.command(ctx, ns.Name, false, "monitor")),
		ctl:  start(t, ctl.name+" monitor in "+name, ctl.command(ctx, ns.Name, false, "monitor")),
		sync: map[string]bool{},
	}
	if !ctl.noJSONMonitor {
		m.ctlJSON = start(t, ctl.name+" -j monitor in "+name, ctl.command(ctx, ns.Name, true, "monitor"))
	}
	return m
}

// all returns the monitors that run.
func (m *monSide) all() []*background {
	if m.ctlJSON == nil {
		return []*background{m.ip, m.ctl}
	}
	return []*background{m.ip, m.ctl, m.ctlJSON}
}

// listening reports whether every monitor has printed an event of a sync
// connection, which proves it is subscribed.
func (m *monSide) listening() bool {
	for _, b := range m.all() {
		seen := false
		for _, l := range b.stdout.lines() {
			if m.sync[monToken(l)] {
				seen = true
				break
			}
		}
		if !seen {
			return false
		}
	}
	return true
}

var monTokenRE = regexp.MustCompile(`token=([0-9a-f]+)`)

// monToken returns the token of a text or JSON monitor line, or "".
func monToken(line string) string {
	if strings.HasPrefix(line, "{") {
		var obj map[string]any
		if json.Unmarshal([]byte(line), &obj) != nil {
			return ""
		}
		switch v := obj["token"].(type) {
		case string:
			return strings.TrimPrefix(strings.ToLower(v), "0x")
		case float64:
			return fmt.Sprintf("%08x", uint32(v))
		}
		return ""
	}
	if m := monTokenRE.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// lines returns b's lines without those of sync connections.
func (m *monSide) lines(b *background) []string {
	var out []string
	for _, l := range b.stdout.lines() {
		if !m.sync[monToken(l)] {
			out = append(out, l)
		}
	}
	return out
}

// echoTokens returns the tokens of the "WORD TOKEN ..." lines mptcpecho
// prints.
func echoTokens(out, word string) []string {
	var toks []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == word {
			toks = append(toks, f[1])
		}
	}
	return toks
}

// monDial runs one mptcpecho client in ns to completion and returns the
// connection's token.
func monDial(t *testing.T, ns *nstest.NS, echo string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*monWait)
	defer cancel()
	var o, e strings.Builder
	cmd := ns.Command(ctx, echo, append([]string{"dial", "-wait", monWait.String()}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("mptcpecho dial %s in %s: %v\n%s%s", strings.Join(args, " "), ns, err, o.String(), e.String())
	}
	toks := echoTokens(o.String(), "connected")
	if len(toks) != 1 {
		t.Fatalf("mptcpecho dial %s: no token in %q", strings.Join(args, " "), o.String())
	}
	return toks[0]
}

// startServer starts an mptcpecho server in ns and waits until it listens.
func startServer(t *testing.T, ns *nstest.NS, echo string, addrs ...string) *background {
	t.Helper()
	b := start(t, "mptcpecho serve "+strings.Join(addrs, " "),
		ns.Command(context.Background(), echo, append([]string{"serve"}, addrs...)...))
	if !waitFor(monWait, func() bool { return strings.Contains(b.stdout.String(), "ready\n") || b.exited() }) || b.exited() {
		t.Fatalf("%s did not get ready: %v\n%s%s", b.name, b.err, b.stdout.String(), b.stderr.String())
	}
	return b
}

func TestParityMonitor(t *testing.T) {
	ctl := requireMptcpctl(t)
	echo := requireMptcpecho(t)
	top := newMonTopology(t)

	// Connections to a server that runs before the monitors start tell when
	// every monitor is subscribed; their events are left out.
	syncSrv := startServer(t, top.server, echo, "10.0.1.1:4999")
	client := startMonSide(t, "client", top.client, ctl)
	server := startMonSide(t, "server", top.server, ctl)
	sides := []*monSide{client, server}
	monitorDied := func() bool {
		for _, m := range sides {
			for _, b := range m.all() {
				if b.exited() {
					return true
				}
			}
		}
		return false
	}
	subscribed := waitFor(2*monWait, func() bool {
		if monitorDied() {
			return true // reported below
		}
		client.sync[monDial(t, top.client, echo, "-bytes", "1", "10.0.1.1:4999")] = true
		return waitFor(3*time.Second, func() bool {
			for _, tok := range echoTokens(syncSrv.stdout.String(), "accept") {
				server.sync[tok] = true
			}
			return client.listening() && server.listening()
		})
	})
	if !subscribed || monitorDied() {
		for _, m := range sides {
			for _, b := range m.all() {
				t.Logf("%s: %v\nstdout:\n%s\nstderr:\n%s", b.name, b.err, b.stdout.String(), b.stderr.String())
			}
		}
		t.Fatal("the monitors did not all report the sync connections")
	}

	// The traffic under test: the server's listeners, then connections that
	// get additional subflows (to the announced address and from the
	// client's subflow endpoint), over IPv4 and IPv6.
	listen := []string{"10.0.1.1:5000", "10.0.2.1:5000"}
	if top.v6 {
		listen = append(listen, "[2001:db8:1::1]:5000")
	}
	srv := startServer(t, top.server, echo, listen...)
	conns := 2
	monDial(t, top.client, echo, "-bytes", "262144", "-subflows", "2", "10.0.1.1:5000")
	if top.v6 {
		monDial(t, top.client, echo, "-bytes", "65536", "[2001:db8:1::1]:5000")
		conns++
	}
	monHeldConnection(t, top, echo, client, server)

	// Endpoint tables after traffic may hold kernel-made entries: they
	// must print alike too.
	for _, ns := range []*nstest.NS{top.client, top.server} {
		for _, op := range stateOps {
			ipRes := ipTool.run(t, ns.Name, op.json, op.args...)
			ctlRes := ctl.run(t, ns.Name, op.json, op.args...)
			for _, d := range compareResults(op, ipRes, ctlRes, ctl) {
				t.Errorf("%s in %s after traffic: %s", op, ns, d)
			}
		}
	}

	srv.stop() // LISTENER_CLOSED events
	monWaitQuiet(t, sides)

	for _, m := range sides {
		for _, b := range m.all() {
			if b.exited() {
				t.Errorf("%s exited early: %v\n%s", b.name, b.err, b.stderr.String())
			}
			b.stop()
		}
		ipLines, ctlLines := m.lines(m.ip), m.lines(m.ctl)
		t.Logf("%s side, ip mptcp monitor:\n%s", m.name, strings.Join(ipLines, "\n"))
		if n := monCount(ipLines, "CREATED"); n < conns {
			t.Errorf("%s side: ip monitor saw %d connections, want at least %d", m.name, n, conns)
		}
		if d := cmp.Diff(ipLines, ctlLines); d != "" {
			t.Errorf("%s side: unexpected monitor lines (-ip +mptcpctl):\n%s", m.name, d)
		}
		for _, b := range m.all()[1:] {
			if s := b.stderr.String(); s != "" {
				t.Errorf("%s wrote to stderr: %q", b.name, s)
			}
		}
		if m.ctlJSON == nil {
			t.Logf("%s has no JSON monitor to check", ctl.name)
			continue
		}
		ifnames := monIfNames(t, m.ns)
		for _, d := range compareMonitorJSON(ipLines, m.lines(m.ctlJSON), ifnames) {
			t.Errorf("%s side, mptcpctl -j monitor: %s", m.name, d)
		}
	}
}

// monHeldConnection makes a connection that stays open while the client
// marks its subflow endpoint backup (MP_PRIO: SF_PRIO on the server) and
// the server withdraws its announced address (REMOVED, SF_CLOSED), then
// transfers again and closes.
func monHeldConnection(t *testing.T, top *monTopology, echo string, client, server *monSide) {
	t.Helper()
	held := holdConnection(t, top.client, echo, monWait, 2, "10.0.1.1:5000")
	// Wait for the events on the ip monitors so that each change reaches
	// the open connection; a kernel that sends none still leaves the
	// comparison meaningful, so only log.
	top.client.MustRun("ip", "mptcp", "endpoint", "change", "id", "1", "backup")
	if !waitFor(monWait/3, func() bool { return monCount(server.ip.stdout.lines(), "SF_PRIO") > 0 }) {
		t.Log("no SF_PRIO event on the server after the client's backup change")
	}
	top.server.MustRun("ip", "mptcp", "endpoint", "delete", "id", "1")
	if !waitFor(monWait/3, func() bool { return monCount(client.ip.stdout.lines(), "REMOVED") > 0 }) {
		t.Log("no REMOVED event on the client after the server's endpoint delete")
	}
	held.release(t, monWait)
}

// monWaitQuiet waits until every connection the ip monitors saw created is
// closed and no monitor printed anything for monQuiet.
func monWaitQuiet(t *testing.T, sides []*monSide) {
	t.Helper()
	total := func() int {
		n := 0
		for _, m := range sides {
			for _, b := range m.all() {
				n += len(b.stdout.String())
			}
		}
		return n
	}
	last, since := -1, time.Now()
	ok := waitFor(2*monWait, func() bool {
		if n := total(); n != last {
			last, since = n, time.Now()
			return false
		}
		if time.Since(since) < monQuiet {
			return false
		}
		for _, m := range sides {
			lines := m.lines(m.ip)
			if monCount(lines, "CREATED") != monCount(lines, "CLOSED") {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Log("monitors did not go quiet with every connection closed; comparing what they printed")
	}
}

// monLineRE splits an `ip mptcp monitor` line: "[%14s]" event name (or
// "[UNKNOWN n]"), then " key=value" fields.
var monLineRE = regexp.MustCompile(`^\[ *([A-Z_]+|UNKNOWN [0-9]+)\]((?: [a-z0-9_]+=\S+)*)$`)

// monCount counts the lines of event ev.
func monCount(lines []string, ev string) int {
	n := 0
	for _, l := range lines {
		if m := monLineRE.FindStringSubmatch(l); m != nil && m[1] == ev {
			n++
		}
	}
	return n
}

// monUnknownNames are the events iproute2 6.1 prints as "[UNKNOWN n]" and
// their names in the JSON form.
var monUnknownNames = map[string]string{
	"UNKNOWN 15": "LISTENER_CREATED",
	"UNKNOWN 16": "LISTENER_CLOSED",
}

// monJSONKeys are the keys of newer iproute2's JSON monitor lines.
var monJSONKeys = map[string]bool{
	"event": true, "token": true, "remid": true, "locid": true,
	"saddr4": true, "saddr6": true, "daddr4": true, "daddr6": true,
	"sport": true, "dport": true, "backup": true, "error": true,
	"flags": true, "timeout": true, "ifindex": true, "dev": true,
	"reset_reason": true, "reset_flags": true, "server_side": true,
}

// compareMonitorJSON checks that the JSON lines describe the same events as
// ip's text lines, field by field; ifnames resolves "dev".
func compareMonitorJSON(text, js []string, ifnames map[int]string) []string {
	var diffs []string
	if len(text) != len(js) {
		diffs = append(diffs, fmt.Sprintf("%d JSON lines for ip's %d lines", len(js), len(text)))
	}
	for i := range min(len(text), len(js)) {
		for _, d := range compareMonitorLine(text[i], js[i], ifnames) {
			diffs = append(diffs, fmt.Sprintf("line %d: %s\n  ip:   %s\n  json: %s", i+1, d, text[i], js[i]))
		}
	}
	return diffs
}

func compareMonitorLine(text, js string, ifnames map[int]string) []string {
	m := monLineRE.FindStringSubmatch(text)
	if m == nil {
		return []string{"cannot parse ip's line"}
	}
	ev := m[1]
	fields := map[string]string{}
	for _, kv := range strings.Fields(m[2]) {
		k, v, _ := strings.Cut(kv, "=")
		fields[k] = v
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(js), &obj); err != nil {
		return []string{fmt.Sprintf("not a JSON object: %v", err)}
	}

	var diffs []string
	name, _ := obj["event"].(string)
	if !strings.EqualFold(name, ev) && !strings.EqualFold(name, monUnknownNames[ev]) {
		diffs = append(diffs, fmt.Sprintf("event %q, want %q", name, ev))
	}
	for k, v := range fields {
		if d := compareMonitorField(k, v, obj); d != "" {
			diffs = append(diffs, d)
		}
	}
	for k, v := range obj {
		if _, inText := fields[k]; inText || k == "event" {
			continue
		}
		switch {
		case !monJSONKeys[k]:
			diffs = append(diffs, fmt.Sprintf("unknown key %q", k))
		case monUnknownNames[ev] != "":
			// ip printed no fields for this event: nothing to compare.
		case k == "dev":
			idx, err := strconv.Atoi(fields["ifindex"])
			if err != nil || v != ifnames[idx] {
				diffs = append(diffs, fmt.Sprintf("dev %v does not name ifindex %q", v, fields["ifindex"]))
			}
		case k == "server_side":
			flags, err := strconv.ParseUint(fields["flags"], 16, 16)
			if err != nil || flags&2 == 0 || !monTruthy(v) {
				diffs = append(diffs, fmt.Sprintf("server_side %v, but ip printed flags=%q", v, fields["flags"]))
			}
		default:
			diffs = append(diffs, fmt.Sprintf("key %q (%v) not in ip's line", k, v))
		}
	}
	return diffs
}

// compareMonitorField checks one "key=value" of ip's line against the JSON.
func compareMonitorField(k, v string, obj map[string]any) string {
	got, ok := obj[k]
	if !ok && k == "flags" {
		// The JSON form carries the server-side bit as "server_side".
		flags, err := strconv.ParseUint(v, 16, 16)
		if err == nil && flags&^2 == 0 && (flags == 0 || monTruthy(obj["server_side"])) {
			return ""
		}
		return fmt.Sprintf("flags=%s not represented", v)
	}
	if !ok {
		return fmt.Sprintf("missing %s=%s", k, v)
	}
	switch g := got.(type) {
	case string:
		if strings.EqualFold(g, v) {
			return ""
		}
	case float64:
		var want float64
		switch k {
		case "token", "flags":
			n, err := strconv.ParseUint(v, 16, 32)
			if err != nil {
				return fmt.Sprintf("ip printed %s=%s", k, v)
			}
			want = float64(n)
		default:
			// reset_flags is "0x.."; ifindex is signed.
			n, err := strconv.ParseInt(v, 0, 64)
			if err != nil {
				return fmt.Sprintf("ip printed %s=%s", k, v)
			}
			want = float64(n)
		}
		if g == want {
			return ""
		}
	case bool:
		if (v == "1") == g && (v == "0" || v == "1") {
			return ""
		}
	}
	return fmt.Sprintf("%s: JSON %v, ip %s", k, got, v)
}

func monTruthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case float64:
		return v != 0
	}
	return false
}

// monIfNames maps ifindex to name in ns ("3: c2@if2: <...>" lines).
func monIfNames(t *testing.T, ns *nstest.NS) map[int]string {
	t.Helper()
	names := map[int]string{}
	for _, l := range strings.Split(ns.MustRun("ip", "-o", "link", "show"), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		idx, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names[idx] = name
	}
	return names
}

// TestCompareMonitorLine checks the JSON checker itself (no root needed).
func TestCompareMonitorLine(t *testing.T) {
	const (
		created = "[       CREATED] token=7ab06eec remid=0 locid=0 saddr4=10.1.1.1 daddr4=10.1.1.2 sport=5000 dport=51482 flags=2"
		sub     = "[SF_ESTABLISHED] token=7ab06eec remid=0 locid=1 saddr4=10.1.2.2 daddr4=10.1.1.1 sport=49737 dport=5000 backup=0 ifindex=3"
	)
	ifnames := map[int]string{1: "lo", 3: "c2"}
	tests := []struct {
		name, text, js string
		wantDiffs      int
	}{
		{"created", created, `{"event":"CREATED","token":"7ab06eec","remid":0,"locid":0,"saddr4":"10.1.1.1","daddr4":"10.1.1.2","sport":5000,"dport":51482,"server_side":true}`, 0},
		{"flags kept as flags", created, `{"event":"created","token":2058383084,"remid":0,"locid":0,"saddr4":"10.1.1.1","daddr4":"10.1.1.2","sport":5000,"dport":51482,"flags":2}`, 0},
		{"server side lost", created, `{"event":"CREATED","token":"7ab06eec","remid":0,"locid":0,"saddr4":"10.1.1.1","daddr4":"10.1.1.2","sport":5000,"dport":51482}`, 1},
		{"subflow with dev", sub, `{"event":"SF_ESTABLISHED","token":"7ab06eec","remid":0,"locid":1,"saddr4":"10.1.2.2","daddr4":"10.1.1.1","sport":49737,"dport":5000,"backup":false,"ifindex":3,"dev":"c2"}`, 0},
		{"wrong dev", sub, `{"event":"SF_ESTABLISHED","token":"7ab06eec","remid":0,"locid":1,"saddr4":"10.1.2.2","daddr4":"10.1.1.1","sport":49737,"dport":5000,"backup":0,"ifindex":3,"dev":"lo"}`, 1},
		{"wrong port and missing backup", sub, `{"event":"SF_ESTABLISHED","token":"7ab06eec","remid":0,"locid":1,"saddr4":"10.1.2.2","daddr4":"10.1.1.1","sport":49738,"dport":5000,"ifindex":3}`, 2},
		{"wrong event", sub, `{"event":"SF_CLOSED","token":"7ab06eec","remid":0,"locid":1,"saddr4":"10.1.2.2","daddr4":"10.1.1.1","sport":49737,"dport":5000,"backup":0,"ifindex":3}`, 1},
		{"unknown key", "[        CLOSED] token=7ab06eec", `{"event":"CLOSED","token":"7ab06eec","colour":"red"}`, 1},
		{"key ip did not print", "[        CLOSED] token=7ab06eec", `{"event":"CLOSED","token":"7ab06eec","remid":1}`, 1},
		{"listener", "[UNKNOWN 15]", `{"event":"LISTENER_CREATED","family":2,"saddr4":"10.0.1.1","sport":5000}`, 1}, // family is not an iproute2 key
		{"listener keys", "[UNKNOWN 16]", `{"event":"LISTENER_CLOSED","saddr4":"10.0.1.1","sport":5000}`, 0},
		{"not JSON", "[        CLOSED] token=7ab06eec", `[        CLOSED] token=7ab06eec`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diffs := compareMonitorLine(tt.text, tt.js, ifnames)
			if len(diffs) != tt.wantDiffs {
				t.Errorf("got %d differences, want %d: %q", len(diffs), tt.wantDiffs, diffs)
			}
		})
	}
}

package daemon

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// The control plane over the engine and the fake kernel: what a client of
// the socket sees as the engine works, without root.

// serve starts r's control socket in a fresh state directory and returns
// a client. Call it before run.
func (r *engineRig) serve(t *testing.T) *control.Client {
	t.Helper()
	r.e.settings.conf.StateDir = shmDir(t)
	ctl, err := startControl(r.e.settings, "v-test", &problemLog{}, r.e.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.close() })
	r.e.ctl = ctl
	r.e.publish(r.e.lastPlan)
	return dialControl(t, ctl)
}

// userspaceRig is an engine in the userspace mode with the sspi plugin on
// the fake kernel, its control socket served; the caller runs it.
func userspaceRig(t *testing.T, s *settings) (*engineRig, *control.Client) {
	t.Helper()
	s.conf.PathManager = "sspi"
	k := mptcptest.NewKernel()
	if err := k.SetPathManager("userspace"); err != nil {
		t.Fatal(err)
	}
	client, err := k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	events, err := k.ListenEvents()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r := &engineRig{k: k}
	r.e = &engine{log: log, routes: &fakeRouter{}, state: netmon.NewState(), notify: func(string) {}}
	r.e.use(s)
	c := r.serve(t)
	if r.e.user, err = newUserspaceMode(client, events, nil, "sspi", s.policy, r.e.ctl, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.e.user.stop() })
	return r, c
}

func dialControl(t *testing.T, ctl *controlPlane) *control.Client {
	t.Helper()
	c, err := control.Dial(ctl.srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitStatus polls the status until cond holds.
func waitStatus(t *testing.T, c *control.Client, what string, cond func(control.Status) bool) control.Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.Status()
		if err != nil {
			t.Fatalf("%s: status: %v", what, err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %+v", what, st)
		}
		time.Sleep(time.Millisecond)
	}
}

// watch collects the event stream of a client of its own.
type watch struct {
	mu  sync.Mutex
	evs []control.Event
}

func watchEvents(t *testing.T, ctl *controlPlane) *watch {
	t.Helper()
	c := dialControl(t, ctl)
	w := &watch{}
	before := ctl.srv.Watched()
	go c.Events(func(ev control.Event) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.evs = append(w.evs, ev)
		return nil
	})
	if !before {
		waitFor(t, "the client to watch", ctl.srv.Watched)
	}
	return w
}

func (w *watch) events() []control.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.evs)
}

// waitText waits for an event whose text starts with each prefix, in
// this order, and returns the events.
func (w *watch) waitText(t *testing.T, prefixes ...string) []control.Event {
	t.Helper()
	var evs []control.Event
	found := func() bool {
		evs = w.events()
		i := 0
		for _, ev := range evs {
			if i < len(prefixes) && strings.HasPrefix(ev.Text, prefixes[i]) {
				i++
			}
		}
		return i == len(prefixes)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !found() {
		if time.Now().After(deadline) {
			var texts []string
			for _, ev := range evs {
				texts = append(texts, ev.Text)
			}
			t.Fatalf("events %q, want ones starting with %q in order", texts, prefixes)
		}
		time.Sleep(time.Millisecond)
	}
	for i, ev := range evs {
		if ev.Seq != evs[0].Seq+uint64(i) {
			t.Fatalf("event %d has seq %d after %d", i, ev.Seq, evs[0].Seq)
		}
	}
	return evs
}

func TestControlStatusFollowsPasses(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	c := r.serve(t)
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.LastPass.IsZero() || st.Mode != control.ModeInKernel || st.Version != "v-test" || st.Kernel == nil ||
		!strings.HasSuffix(st.Socket, ".sock") || !strings.HasSuffix(st.StateFile, ".json") {
		t.Errorf("status before the first pass: %+v", st)
	}

	l := r.run(t, nil)
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	st = waitStatus(t, c, "first pass", func(st control.Status) bool {
		return len(st.Endpoints) == 1 && st.Endpoints[0].Kernel == "present"
	})
	if len(st.Kernel.Owned) != 1 || st.Kernel.Owned[0].Address != netip.MustParseAddr("192.0.2.1") || st.Kernel.Owned[0].Dev != "test0" ||
		len(st.Kernel.Foreign) != 0 || st.Endpoints[0].ID != st.Kernel.Owned[0].ID {
		t.Errorf("kernel table after the first pass: %+v, wanted %+v", st.Kernel, st.Endpoints)
	}
	if len(st.Links) != 1 || !st.Links[0].Usable || st.LastPass.IsZero() || st.Counters.Passes == 0 {
		t.Errorf("status after the first pass: %+v", st)
	}
	if st.Kernel.Limits.Subflows == nil || st.Kernel.WantedLimits.Subflows == nil {
		t.Errorf("limits %+v: want the kernel's and the policy's", st.Kernel)
	}

	// An endpoint made behind the daemon's back shows as foreign once a
	// full pass has read the table again.
	kc, err := r.k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	if err := kc.AddEndpoint(mptcp.Endpoint{Addr: netip.MustParseAddr("10.9.9.9"), Flags: mptcp.FlagSignal}); err != nil {
		t.Fatal(err)
	}
	l.events <- netmon.ResyncNeeded{Reason: errors.New("test")}
	l.events <- netmon.Synced{}
	st = waitStatus(t, c, "after the resync", func(st control.Status) bool { return len(st.Kernel.Foreign) == 1 })
	if st.Kernel.Foreign[0].Address != netip.MustParseAddr("10.9.9.9") || st.Counters.Resyncs != 1 || len(st.Kernel.Owned) != 1 {
		t.Errorf("status after the resync: %+v", st)
	}
	if len(st.Problems) != 0 {
		t.Errorf("problems %+v: the rig's logger is not the daemon's", st.Problems)
	}
}

func TestControlExplain(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.e.settings.policyWhy, r.e.settings.configPath = "given with --policy", "/etc/mptcpd/mptcpd.conf"
	c := r.serve(t)
	l := r.run(t, nil)
	l.twoLinks("other0")
	waitStatus(t, c, "first pass", func(st control.Status) bool { return len(st.Endpoints) == 1 && st.Endpoints[0].Kernel == "present" })
	x, err := c.Explain()
	if err != nil {
		t.Fatal(err)
	}
	p, links, plan, err := x.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if x.Why != "given with --policy" || x.Config != "/etc/mptcpd/mptcpd.conf" || x.ConfigFound || p.Source != "test.policy" ||
		x.Capacity != 8 || x.Foreign != 0 || len(links) != 2 || len(x.Kernel) != 1 || x.Kernel[0].Dev != "test0" {
		t.Errorf("explain %+v", x)
	}
	var verdicts []string
	for _, d := range plan.Decisions {
		verdicts = append(verdicts, d.Address.String()+" "+d.Verdict.String())
	}
	if want := []string{"192.0.2.1/24 endpoint", "198.51.100.1/24 no rule matched"}; !slices.Equal(verdicts, want) {
		t.Errorf("decisions %q, want %q", verdicts, want)
	}
	if plan.Decisions[0].Rule != &p.Rules[0] {
		t.Errorf("the endpoint's rule is not the policy's first")
	}
}

// A reload through the socket goes through the loop as SIGHUP does, and
// answers after the pass that applies it.
func TestControlReload(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	c := r.serve(t)
	w := watchEvents(t, r.e.ctl)
	next := func() (*settings, error) { return nil, errors.New("test.policy:1: unknown keyword \"mtach\"") }
	l := r.run(t, func() (*settings, error) { return next() })
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	waitStatus(t, c, "first pass", func(st control.Status) bool { return len(st.Endpoints) == 1 })

	_, err := c.Reload()
	var re *control.RemoteError
	if !errors.As(err, &re) || re.Msg != `test.policy:1: unknown keyword "mtach"` {
		t.Errorf("bad reload: %v", err)
	}
	next = func() (*settings, error) {
		s := testSettings(t, "match name=test*\n    flags subflow backup\n")
		s.conf.StateDir = r.e.settings.conf.StateDir
		return s, nil
	}
	got, err := c.Reload()
	if err != nil || got.Policy != "test.policy" {
		t.Fatalf("good reload: %+v, %v", got, err)
	}
	// Answered after the pass: the new flags are there already.
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Endpoints) != 1 || !slices.Equal(st.Endpoints[0].Flags, []string{"subflow", "backup"}) || st.Endpoints[0].Kernel != "present" ||
		st.Counters.Reloads != 2 {
		t.Errorf("status right after the reload: %+v", st)
	}
	w.waitText(t, "reload failed: test.policy:1", "reload ok", "endpoint flags 192.0.2.1")
}

func TestControlEventsInOrder(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.serve(t)
	w := watchEvents(t, r.e.ctl)
	l := r.run(t, nil)
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	w.waitText(t, "link new 2: test0", "addr new inet 192.0.2.1/24", "synced", "endpoint added 192.0.2.1 id 1 subflow dev test0")
	l.events <- addr(netmon.OpDel, 2, "192.0.2.1/24")
	evs := w.waitText(t, "link new", "addr new", "synced", "endpoint added", "addr del inet 192.0.2.1/24", "endpoint deleted 192.0.2.1 id 1 subflow dev test0")
	for _, ev := range evs {
		if ev.Kind == control.KindAddr && (ev.Link != "test0" || ev.Address != "192.0.2.1/24" || !strings.Contains(ev.Text, " dev test0 ")) {
			t.Errorf("address event %+v: want its link and address, the link by name", ev)
		}
	}
}

func TestControlAnotherDaemon(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.serve(t)
	_, err := startControl(r.e.settings, "v-test", &problemLog{}, r.e.log)
	if !errors.Is(err, control.ErrAnotherDaemon) {
		t.Errorf("second daemon in the namespace: %v", err)
	}
}

// The userspace mode shows the plugin's table and commands, and the
// kernel's events, through the taps.
func TestControlUserspace(t *testing.T) {
	s := testSettings(t, "match name=test*\n    flags subflow\n")
	r, c := userspaceRig(t, s)
	k := r.k
	r.e.publish(r.e.lastPlan)
	w := watchEvents(t, r.e.ctl)

	l := r.run(t, nil)
	l.twoLinks("test1")
	waitStatus(t, c, "first pass", func(st control.Status) bool { return len(st.Endpoints) == 2 })
	local, remote := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("203.0.113.1:443")
	k.Inject(userspacetest.OpenEvents(0x7ab06eec, local, remote, false)...)
	w.waitText(t, "mptcp CREATED token 7ab06eec 192.0.2.1:40000 -> 203.0.113.1:443",
		"mptcp ESTABLISHED token 7ab06eec", "command by sspi token 7ab06eec: create subflow id ")

	cs, err := c.Connections()
	if err != nil {
		t.Fatal(err)
	}
	if cs.Mode != control.ModeUserspace || cs.Plugin != "sspi" || len(cs.Connections) != 1 {
		t.Fatalf("connections %+v", cs)
	}
	conn := cs.Connections[0]
	if conn.Token != "7ab06eec" || conn.Local != local || !conn.Established || len(conn.Commands) != 1 ||
		conn.Commands[0].Op != control.OpCreateSubflow || conn.Commands[0].Local.Addr() != netip.MustParseAddr("198.51.100.1") ||
		conn.Commands[0].Remote != remote || conn.Commands[0].Error != "" {
		t.Errorf("connection %+v", conn)
	}
	// The fake kernel establishes the join at once, or about.
	if n := len(conn.Subflows); n != 2 || conn.Subflows[1].Local.Addr() != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("subflows %+v: want the initial one and the plugin's", conn.Subflows)
	}
	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Plugin != "sspi" || st.Userspace == nil || st.Userspace.Connections != 1 || st.Kernel != nil {
		t.Errorf("status %+v", st)
	}

	// CLOSED drops the connection's history once the next batch is read.
	k.Inject(mptcptest.Complete(mptcp.Event{Type: mptcp.EventClosed, Token: 0x7ab06eec}))
	w.waitText(t, "mptcp CLOSED token 7ab06eec")
	k.Inject(userspacetest.OpenEvents(2, local, remote, true)...)
	w.waitText(t, "mptcp CLOSED", "mptcp CREATED token 00000002")
	waitFor(t, "the closed connection's commands to go", func() bool { return len(r.e.user.commands.of(0x7ab06eec)) == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

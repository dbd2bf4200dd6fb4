package integration

// `mptcpctl policy explain` on a real namespace: veth links named like a
// laptop's (classified by the policy's classify statements, since veths
// are virtual to the kernel), addresses for several verdicts, and kernel
// endpoints present, different and unexplained.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// policyCLIPolicy's rules start at lines 4 (ignore), 7 (ethernet) and 11
// (wifi).
const policyCLIPolicy = `classify eth* ethernet
classify wlan* wifi

match address=10.99.0.0/16
    ignore

match kind=ethernet
    flags subflow
    priority 30

match kind=wifi
    flags signal
    priority 20
`

// policyCLISetup prepares a namespace and the policy and mptcpd.conf
// files, and returns the namespace and the arguments that name the files.
func policyCLISetup(t *testing.T) (*nstest.NS, []string, mptcpTool) {
	t.Helper()
	ctl := requireMptcpctl(t)
	if ctl.sub != nil {
		t.Skip("MPTCPCTL=ip: iproute2 has no policy commands")
	}
	ns, peer := nstest.New(t), nstest.New(t)
	nstest.Veth(t, ns, "eth0", peer, "peth0")
	nstest.Veth(t, ns, "wlan0", peer, "pwlan0")
	for _, a := range [][]string{
		{"10.1.0.2/24", "dev", "eth0"},
		{"2001:db8:1::2/64", "dev", "eth0", "nodad"}, // no DAD: never tentative
		{"fe80::aa/64", "dev", "eth0", "nodad"},
		{"10.2.0.2/24", "dev", "wlan0"},
		{"10.99.0.2/24", "dev", "wlan0"},
	} {
		ns.MustRun("ip", append([]string{"addr", "add"}, a...)...)
	}
	ns.MustRun("ip", "route", "add", "default", "via", "10.1.0.1", "dev", "eth0")
	ns.MustRun("ip", "mptcp", "endpoint", "add", "10.1.0.2", "dev", "eth0", "subflow")  // as wanted
	ns.MustRun("ip", "mptcp", "endpoint", "add", "10.2.0.2", "dev", "wlan0", "subflow") // the policy wants signal
	ns.MustRun("ip", "mptcp", "endpoint", "add", "10.9.9.9", "signal")                  // on no local address

	dir := t.TempDir()
	pol, conf := filepath.Join(dir, "policy"), filepath.Join(dir, "mptcpd.conf")
	if err := os.WriteFile(pol, []byte(policyCLIPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	// An empty mptcpd.conf keeps the host's out of the test.
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return ns, []string{"--policy", pol, "--config", conf}, ctl
}

func TestPolicyExplainCLI(t *testing.T) {
	ns, files, ctl := policyCLISetup(t)

	r := ctl.run(t, ns.Name, false, append([]string{"policy", "explain"}, files...)...)
	if r.code != 0 {
		t.Fatalf("policy explain: exit %d, stderr %q", r.code, r.stderr)
	}
	// The address lines, by address (the column width depends on the
	// kernel's own link-local addresses), and the headings.
	verdicts := map[string]string{}
	var headings []string
	for line := range strings.Lines(r.stdout) {
		line = strings.TrimSuffix(line, "\n")
		if rest, ok := strings.CutPrefix(line, "  "); ok {
			addr, verdict, _ := strings.Cut(rest, " ")
			verdicts[addr] = strings.TrimSpace(verdict)
		} else if strings.HasPrefix(line, "eth0:") || strings.HasPrefix(line, "wlan0:") || strings.HasPrefix(line, "lo:") {
			headings = append(headings, line)
		}
	}
	want := map[string]string{
		"127.0.0.1/8":        "loopback",
		"::1/128":            "loopback",
		"10.1.0.2/24":        "endpoint subflow (line 7); kernel id 1",
		"2001:db8:1::2/64":   "endpoint subflow (line 7); not in kernel",
		"fe80::aa/64":        "link-local",
		"10.2.0.2/24":        "endpoint signal (line 11); kernel id 2 but subflow",
		"10.99.0.2/24":       "ignored (line 4)",
		"10.9.9.9":           "id 3 signal", // kernel endpoints on no address
		"subflows:":          "want 2 (auto), kernel 2",
		"add_addr_accepted:": "want 2 (auto), kernel 0, differs",
	}
	for addr, w := range want {
		if got := verdicts[addr]; got != w {
			t.Errorf("%s: %q, want %q", addr, got, w)
		}
	}
	wantHeadings := []string{"lo: loopback, usable", "eth0: ethernet, usable, default route IPv4", "wlan0: wifi, usable"}
	if diff := cmp.Diff(wantHeadings, headings); diff != "" {
		t.Errorf("unexpected interface headings (-want +got):\n%s", diff)
	}
	if t.Failed() {
		t.Logf("policy explain printed:\n%s", r.stdout)
	}
}

// policyCLIJSON is the part of explain's -j object the test reads.
type policyCLIJSON struct {
	Endpoints struct {
		Wanted   int `json:"wanted"`
		Capacity int `json:"capacity"`
		Foreign  int `json:"foreign"`
	} `json:"endpoints"`
	Interfaces []struct {
		Name      string `json:"name"`
		Kind      string `json:"kind"`
		Addresses []struct {
			Address string `json:"address"`
			Verdict string `json:"verdict"`
			Rule    *struct {
				Line int `json:"line"`
			} `json:"rule"`
			Kernel string `json:"kernel"`
		} `json:"addresses"`
	} `json:"interfaces"`
	Unexplained []struct {
		Address string `json:"address"`
	} `json:"unexplained"`
}

func TestPolicyExplainCLIJSON(t *testing.T) {
	ns, files, ctl := policyCLISetup(t)
	for _, pretty := range []bool{false, true} {
		args := []string{"policy", "explain"}
		if pretty {
			args = append(args, "-p")
		}
		r := ctl.run(t, ns.Name, true, append(args, files...)...)
		if r.code != 0 {
			t.Fatalf("policy explain -j: exit %d, stderr %q", r.code, r.stderr)
		}
		var got policyCLIJSON
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("pretty=%v: %v\n%s", pretty, err, r.stdout)
		}
		type verdict struct{ Kind, Verdict, Kernel string }
		byAddr := map[string]verdict{}
		lines := map[string]int{}
		for _, i := range got.Interfaces {
			for _, a := range i.Addresses {
				byAddr[i.Name+" "+a.Address] = verdict{i.Kind, a.Verdict, a.Kernel}
				if a.Rule != nil {
					lines[a.Address] = a.Rule.Line
				}
			}
		}
		for addr, w := range map[string]verdict{
			"eth0 10.1.0.2/24":      {"ethernet", "endpoint", "present"},
			"eth0 2001:db8:1::2/64": {"ethernet", "endpoint", "missing"},
			"eth0 fe80::aa/64":      {"ethernet", "link-local", "none"},
			"wlan0 10.2.0.2/24":     {"wifi", "endpoint", "differs"},
			"wlan0 10.99.0.2/24":    {"wifi", "ignored", "none"},
			"lo 127.0.0.1/8":        {"loopback", "loopback", "none"},
		} {
			if byAddr[addr] != w {
				t.Errorf("pretty=%v: %s: %+v, want %+v", pretty, addr, byAddr[addr], w)
			}
		}
		if diff := cmp.Diff(map[string]int{"10.1.0.2/24": 7, "2001:db8:1::2/64": 7, "10.2.0.2/24": 11, "10.99.0.2/24": 4}, lines); diff != "" {
			t.Errorf("pretty=%v: unexpected rule lines (-want +got):\n%s", pretty, diff)
		}
		if e := got.Endpoints; e.Wanted != 3 || e.Capacity != 7 || e.Foreign != 1 {
			t.Errorf("pretty=%v: endpoints %+v, want 3 wanted, room for 7, 1 foreign", pretty, e)
		}
		if len(got.Unexplained) != 1 || got.Unexplained[0].Address != "10.9.9.9" {
			t.Errorf("pretty=%v: unexplained %+v, want 10.9.9.9", pretty, got.Unexplained)
		}
	}
}

func TestPolicyCheckCLI(t *testing.T) {
	_, files, ctl := policyCLISetup(t)
	r := ctl.runArgv(t, append([]string{"policy", "check"}, files...))
	if want := files[1] + ": OK (3 rules, 2 classify)\n"; r.code != 0 || !strings.HasSuffix(r.stdout, want) {
		t.Errorf("policy check: exit %d, stdout %q, stderr %q; want 0 and %q", r.code, r.stdout, r.stderr, want)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("match kind=ethernet\n    flags subflow signl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = ctl.runArgv(t, []string{"policy", "check", bad, "--config", files[3]})
	if want := bad + ":2: flags: unknown flag \"signl\" (hint: did you mean \"signal\"?)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("policy check of a bad file: exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
}

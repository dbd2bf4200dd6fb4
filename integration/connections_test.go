package integration

// `mptcpctl connections` on a real connection: what the built binary
// prints, as text and as JSON, agrees with nl/mptcpdiag on both ends.

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// connSubflows maps a connection's token to its number of subflows.
type connSubflows map[string]int

// diagSubflows is what nl/mptcpdiag reports, listeners left out.
func diagSubflows(t *testing.T, c *mptcpdiag.Client) connSubflows {
	t.Helper()
	conns, err := c.Connections()
	if err != nil {
		t.Fatalf("Connections: %v", err)
	}
	got := connSubflows{}
	for _, conn := range conns {
		if conn.Listening() {
			continue
		}
		// -1 while the subflows listed and the kernel's count differ:
		// Connections reads them in two dumps.
		n := len(conn.Subflows)
		if conn.Info.TotalSubflows() != n {
			n = -1
		}
		got[conn.Info.Token.String()] = n
	}
	return got
}

// textSubflows reads the text form: a "token" line per connection, an
// indented line per subflow.
func textSubflows(t *testing.T, out string) connSubflows {
	t.Helper()
	got := connSubflows{}
	var token string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		switch f := strings.Fields(line); {
		case strings.HasPrefix(line, "  ") && token != "":
			got[token]++
		case len(f) > 1 && f[0] == "token":
			token = f[1]
			got[token] = 0
		default:
			t.Fatalf("unexpected line %q in:\n%s", line, out)
		}
	}
	return got
}

// jsonSubflows reads the -j form.
func jsonSubflows(t *testing.T, out string) connSubflows {
	t.Helper()
	var conns []struct {
		Token    string            `json:"token"`
		Subflows []json.RawMessage `json:"subflows"`
	}
	if err := json.Unmarshal([]byte(out), &conns); err != nil {
		t.Fatalf("-j output: %v\n%s", err, out)
	}
	got := connSubflows{}
	for _, c := range conns {
		got[c.Token] = len(c.Subflows)
	}
	return got
}

func TestConnectionsCLI(t *testing.T) {
	ctl := requireMptcpctl(t)
	if ctl.sub != nil {
		t.Skip("MPTCPCTL=ip: iproute2 has no connections command")
	}
	echo := requireMptcpecho(t)
	top := newMonTopology(t)
	startServer(t, top.server, echo, "10.0.1.1:5000")
	held := holdConnection(t, top.client, echo, monWait, 1, "10.0.1.1:5000")

	for _, side := range []struct {
		ns  *nstest.NS
		dev *regexp.Regexp // the join's line: its device comes from its route
	}{
		{top.client, regexp.MustCompile(`\n  10\.0\.2\.2:\d+ -> 10\.0\.1\.1:5000 dev c2 `)},
		{top.server, regexp.MustCompile(`\n  10\.0\.1\.1:5000 -> 10\.0\.2\.2:\d+ dev s2 `)},
	} {
		ns := side.ns
		// The kernel may still be adding subflows: compare outputs taken
		// between two equal reports of nl/mptcpdiag.
		diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: ns.Handle().FD()})
		if err != nil {
			t.Fatal(err)
		}
		defer diag.Close()
		var before connSubflows
		var text, js string
		ok := waitFor(monWait, func() bool {
			before = diagSubflows(t, diag)
			r := ctl.run(t, ns.Name, false, "connections")
			rj := ctl.run(t, ns.Name, true, "connections")
			if r.code != 0 || rj.code != 0 {
				t.Fatalf("connections in %s: exit %d and %d (-j), stderr %q %q", ns, r.code, rj.code, r.stderr, rj.stderr)
			}
			text, js = r.stdout, rj.stdout
			for _, n := range before {
				if n < 2 {
					return false
				}
			}
			return len(before) == 1 && reflect.DeepEqual(before, diagSubflows(t, diag))
		})
		if !ok {
			t.Fatalf("%s: no stable single connection with 2 subflows or more in %v: last %v", ns, monWait, before)
		}
		t.Logf("mptcpctl -n %s connections:\n%s", ns, text)
		for _, got := range []struct {
			form string
			subs connSubflows
		}{{"text", textSubflows(t, text)}, {"JSON", jsonSubflows(t, js)}} {
			if !reflect.DeepEqual(got.subs, before) {
				t.Errorf("%s: mptcpctl connections (%s) shows %v, nl/mptcpdiag %v\n%s", ns, got.form, got.subs, before, text)
			}
		}
		if !side.dev.MatchString(text) {
			t.Errorf("%s: no line matching %s", ns, side.dev)
		}
		for tok, n := range before {
			if want := fmt.Sprintf("token %s ", tok); !strings.Contains(text, want) || !strings.Contains(text, fmt.Sprintf(" subflows %d/", n)) {
				t.Errorf("%s: text lacks %q with subflows %d:\n%s", ns, want, n, text)
			}
		}
	}

	// Listeners only with -a.
	listen := "listen 10.0.1.1:5000\n"
	if r := ctl.run(t, top.server.Name, false, "connections"); strings.Contains(r.stdout, listen) {
		t.Errorf("listener shown without -a:\n%s", r.stdout)
	}
	if r := ctl.run(t, top.server.Name, false, "connections", "-a"); !strings.Contains(r.stdout, listen) {
		t.Errorf("connections -a lacks %q:\n%s", listen, r.stdout)
	}
	held.release(t, monWait)
}

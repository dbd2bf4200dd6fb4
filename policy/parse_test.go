package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/internal/golden"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// The golden files in testdata/ hold, for each testdata/*.policy, either
// the errors Parse reports or the policy's Format. After a deliberate
// change, regenerate them with
//
//	go test ./policy -run Golden -update
//
// and review the diff.
func goldenFile(t *testing.T, path string, got string) {
	t.Helper()
	golden.Check(t, path, []byte(got))
}

func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.policy")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.policy: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := Load(file, DefaultConfig().BaseSettings())
			wantErr := strings.HasPrefix(filepath.Base(file), "errors-")
			if (err != nil) != wantErr {
				t.Fatalf("Load error = %v, want error: %v", err, wantErr)
			}
			var got string
			if err != nil {
				got = err.Error() + "\n"
			} else {
				got = p.Format()
				checkRoundTrip(t, p)
			}
			goldenFile(t, strings.TrimSuffix(file, ".policy")+".golden", got)
		})
	}
}

// equalPolicy compares policies apart from where they were written.
var equalPolicy = cmp.Options{
	cmpopts.IgnoreFields(Policy{}, "Source"),
	cmpopts.IgnoreFields(Rule{}, "Pos"),
	cmpopts.IgnoreFields(ClassifyRule{}, "Pos"),
	cmpopts.EquateComparable(netip.Prefix{}),
}

// checkRoundTrip parses p's Format with other base settings and wants p.
func checkRoundTrip(t *testing.T, p *Policy) {
	t.Helper()
	text := p.Format()
	q, err := Parse("formatted", []byte(text), Settings{CheckRoute: !p.Settings.CheckRoute})
	if err != nil {
		t.Fatalf("Format output does not parse: %v\n%s", err, text)
	}
	if diff := cmp.Diff(p, q, equalPolicy); diff != "" {
		t.Fatalf("Parse(Format(p)) differs (-p +parsed):\n%s\n%s", diff, text)
	}
}

func TestParseError(t *testing.T) {
	_, err := Parse("f", []byte("match\n    flags subfow\n"), Settings{})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is no *Error", err, err)
	}
	want := Error{Pos: Position{File: "f", Line: 2}, Msg: `flags: unknown flag "subfow"`, Hint: `did you mean "subflow"?`}
	if *e != want {
		t.Errorf("error = %+v, want %+v", *e, want)
	}
}

func TestParseKeepsBase(t *testing.T) {
	base := Settings{CheckRoute: true, Subflows: Limit{Mode: LimitFixed, Value: 3}, RouteTableBase: 500, RulePriority: 9}
	p, err := Parse("f", []byte("skip-loopback yes\n"), base)
	if err != nil {
		t.Fatal(err)
	}
	want := base
	want.SkipLoopback = true
	if p.Settings != want {
		t.Errorf("settings = %+v, want %+v", p.Settings, want)
	}
}

func TestLoadRefusesWorldWritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy")
	if err := os.WriteFile(path, []byte("match\n ignore\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, Settings{}); err != nil {
		t.Fatalf("Load of a 0600 file: %v", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, Settings{})
	if err == nil || !strings.Contains(err.Error(), "world-writable") {
		t.Errorf("Load of a 0666 file: error %v, want world-writable", err)
	}
	if _, err := Load(filepath.Dir(path), Settings{}); err == nil {
		t.Error("Load of a directory succeeded")
	}
}

func TestDefault(t *testing.T) {
	base := DefaultConfig().BaseSettings()
	for _, tc := range []struct {
		addrFlags  mptcp.Flags
		want, wwan mptcp.Flags
	}{
		{0, mptcp.FlagSubflow, mptcp.FlagSubflow | mptcp.FlagBackup},
		{mptcp.FlagSignal, mptcp.FlagSignal, mptcp.FlagSignal | mptcp.FlagBackup},
		{mptcp.FlagSubflow | mptcp.FlagFullmesh, mptcp.FlagSubflow | mptcp.FlagFullmesh, mptcp.FlagSubflow | mptcp.FlagFullmesh | mptcp.FlagBackup},
	} {
		p := Default(base, tc.addrFlags)
		if p.Settings != base {
			t.Errorf("Default(%v): settings %+v, want the base", tc.addrFlags, p.Settings)
		}
		for _, r := range p.Rules {
			want := tc.want
			if len(r.Kinds) == 1 && r.Kinds[0] == KindWWAN {
				want = tc.wwan
			}
			if r.Ignore {
				want = 0
			}
			if r.Flags != want || r.Pos.Line != 0 {
				t.Errorf("Default(%v): rule %s has flags %v at %v, want %v at built-in", tc.addrFlags, r.Kinds, r.Flags, r.Pos, want)
			}
		}
		checkRoundTrip(t, p)
	}
}

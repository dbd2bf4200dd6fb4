package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// addSeeds adds the files matching glob to f's corpus.
func addSeeds(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(g)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// FuzzParse: Parse never panics, every error it returns is a *Error with a
// position inside the file, and a policy it accepts round-trips through
// Format.
func FuzzParse(f *testing.F) {
	addSeeds(f, "testdata/*.policy", "../policy.example")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz", data, DefaultConfig().BaseSettings())
		if err != nil {
			checkErrors(t, err, strings.Count(string(data), "\n")+1)
			return
		}
		checkRoundTrip(t, p)
	})
}

// FuzzParseConfig: ParseConfig never panics, reports errors as *Error
// with positions, and what it accepts keeps the invariants the daemon
// relies on.
func FuzzParseConfig(f *testing.F) {
	addSeeds(f, "testdata/*.conf", "../mptcpd.conf.example")
	f.Add([]byte("[core]\naddr-flags=signal,fullmesh\nresync-interval=0s\n"))
	f.Add([]byte("[relay]\nrole=gateway\nintercept=br-lan\nintercept-sources=192.168.1.0/24,fd00::1\nidle-timeout=none\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, warns, err := ParseConfig("fuzz", data)
		lines := strings.Count(string(data), "\n") + 1
		for _, w := range warns {
			if w.Pos.File != "fuzz" || w.Pos.Line < 1 || w.Pos.Line > lines {
				t.Errorf("warning at %v, outside the file's %d lines", w.Pos, lines)
			}
		}
		if err != nil {
			checkErrors(t, err, lines)
			return
		}
		if c.ResyncInterval < time.Second || c.AddrFlags.String() == "signal fullmesh" ||
			(c.StateDir != "" && !filepath.IsAbs(c.StateDir)) || (c.PolicyFile != "" && !filepath.IsAbs(c.PolicyFile)) {
			t.Errorf("accepted a config the daemon cannot use: %+v", c)
		}
		if r := c.Relay; (r.KeyFile != "" && !filepath.IsAbs(r.KeyFile)) || r.FirstDataWait > maxFirstDataWait ||
			r.HandshakeTimeout < 0 || r.DialTimeout < 0 || !(r.Rate >= 0 && r.Rate <= 1e6) {
			t.Errorf("accepted a [relay] mptcpd-relay cannot use: %+v", r)
		}
	})
}

func checkErrors(t *testing.T, err error, lines int) {
	t.Helper()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v (%T) is not a joined list", err, err)
	}
	errs := joined.Unwrap()
	if len(errs) > maxErrors+1 {
		t.Errorf("%d errors, more than %d", len(errs), maxErrors+1)
	}
	for _, e := range errs {
		var pe *Error
		if !errors.As(e, &pe) || pe.Pos.File != "fuzz" || pe.Pos.Line < 1 || pe.Pos.Line > lines {
			t.Errorf("error %v (%T) has no position inside the file's %d lines", e, e, lines)
		}
	}
}

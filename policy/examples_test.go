package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The examples at the top of the repository must parse cleanly, and
// policy.example must be the built-in policy it says it is.
func TestExamples(t *testing.T) {
	c, warns, err := LoadConfig("../mptcpd.conf.example")
	if err != nil || len(warns) != 0 {
		t.Fatalf("mptcpd.conf.example: %v, warnings %v", err, warns)
	}
	if c.Source != "../mptcpd.conf.example" {
		t.Fatalf("mptcpd.conf.example was not read (source %q)", c.Source)
	}
	p, err := Load("../policy.example", c.BaseSettings())
	if err != nil {
		t.Fatalf("policy.example: %v", err)
	}
	if diff := cmp.Diff(Default(c.BaseSettings(), 0), p, equalPolicy); diff != "" {
		t.Errorf("policy.example is not the built-in policy (-built-in +example):\n%s", diff)
	}
}

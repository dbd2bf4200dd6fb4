package daemon

import (
	"bytes"
	"strings"
	"testing"
)

func TestJournalLoggerPrefixesPriority(t *testing.T) {
	var out bytes.Buffer
	log, err := NewLogger("journal", false, &out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("endpoint added", "addr", "10.0.0.1")
	log.Warn("table full")
	log.Error("kernel refused", "err", "ERANGE")
	log.Debug("not shown")
	want := "<6>msg=\"endpoint added\" addr=10.0.0.1\n<4>msg=\"table full\"\n<3>msg=\"kernel refused\" err=ERANGE\n"
	if got := out.String(); got != want {
		t.Errorf("journal lines:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoggerDebugLevel(t *testing.T) {
	var out bytes.Buffer
	log, err := NewLogger("journal", true, &out)
	if err != nil {
		t.Fatal(err)
	}
	log.With("netns", "x").Debug("reconcile")
	if got := out.String(); got != "<7>msg=reconcile netns=x\n" {
		t.Errorf("got %q", got)
	}
}

func TestLoggerDestinations(t *testing.T) {
	var out bytes.Buffer
	for _, dest := range []string{"", "stderr", "null"} {
		if _, err := NewLogger(dest, false, &out); err != nil {
			t.Errorf("NewLogger(%q) = %v", dest, err)
		}
	}
	_, err := NewLogger("file", false, &out)
	if err == nil || !strings.Contains(err.Error(), `"file"`) {
		t.Errorf("NewLogger(file) = %v, want an error naming the destination", err)
	}
}

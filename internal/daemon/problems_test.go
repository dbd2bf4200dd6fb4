package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Warnings and errors reach status whatever the log's level; everything
// still reaches the log as before.
func TestProblemHandler(t *testing.T) {
	var out bytes.Buffer
	text := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})
	problems := &problemLog{}
	log := slog.New(newProblemHandler(text, problems))

	log.Info("started")
	log.Warn("endpoint left out", "decision", "10.6.0.2/24: over limit")
	log.With("plugin", "sspi").WithGroup("cmd").Warn("command failed", "token", "7ab06eec")
	log.Error("reconcile failed", "err", "dump: EPERM")

	var got []string
	for _, p := range problems.list() {
		got = append(got, p.Level+" "+p.Message)
	}
	want := []string{
		`WARN endpoint left out decision="10.6.0.2/24: over limit"`,
		"WARN command failed plugin=sspi cmd.token=7ab06eec",
		"ERROR reconcile failed err=\"dump: EPERM\"",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if s := out.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "reconcile failed") {
		t.Errorf("the log at error level got:\n%s", s)
	}

	for i := range 2 * maxProblems {
		log.Warn(fmt.Sprint("warning ", i))
	}
	list := problems.list()
	if len(list) != maxProblems || list[0].Message != fmt.Sprint("warning ", maxProblems) || list[maxProblems-1].Message != fmt.Sprint("warning ", 2*maxProblems-1) {
		t.Errorf("after %d more warnings: %d kept, first %q", 2*maxProblems, len(list), list[0].Message)
	}
}

package ctl

import (
	"testing"

	"github.com/mptcpd-go/mptcpd/internal/trace"
)

// TestTraceFormat: --format wins, then -j, then the file's extension.
func TestTraceFormat(t *testing.T) {
	for _, tc := range []struct {
		format, output string
		json           bool
		want           trace.Format
	}{
		{"", "", false, trace.FormatCSV},
		{"", "run.csv", false, trace.FormatCSV},
		{"", "run.json", false, trace.FormatJSON},
		{"", "runs/a.jsonl", false, trace.FormatJSON},
		{"", "", true, trace.FormatJSON},
		{"csv", "", true, trace.FormatCSV},
		{"csv", "run.jsonl", false, trace.FormatCSV},
		{"json", "run.csv", false, trace.FormatJSON},
	} {
		r := &runner{json: tc.json}
		got, err := r.traceFormat(traceFlags{format: tc.format, output: tc.output})
		if err != nil || got != tc.want {
			t.Errorf("--format %q -o %q, -j %v: %q, %v; want %q", tc.format, tc.output, tc.json, got, err, tc.want)
		}
	}
}

// TestTraceErrors: bad options are refused before anything is opened;
// trace reads the kernel, never a test backend.
func TestTraceErrors(t *testing.T) {
	runCommandCases(t, []commandCase{
		{line: "trace now", code: ExitUsage, stderr: "Command \"now\" is unknown, try \"mptcpctl help\".\n"},
		{line: "trace --format xml", code: ExitUsage, stderr: "Error: --format \"xml\": csv or json\n"},
		{line: "trace --interval 0s", code: ExitUsage, stderr: "Error: --interval 0s: must be positive\n"},
		{line: "trace --duration -1s", code: ExitUsage, stderr: "Error: --duration -1s: must not be negative\n"},
		{line: "trace --interval 10", code: ExitUsage,
			stderr: "Error: invalid argument \"10\" for \"--interval\" flag: time: missing unit in duration \"10\"\nTry \"mptcpctl --help\".\n"},
		{line: "-n missing trace", code: ExitUsage,
			stderr: "Cannot open network namespace \"missing\": No such file or directory\n"},
		{line: "trace --duration 1s", code: ExitFailure, stderr: "Error: trace: reads the kernel, not this backend\n"},
	})
}

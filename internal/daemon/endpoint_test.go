package daemon

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestRunEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		parseErr error
		exit     bool
		serveErr error
		code     int
		stderr   string
	}{
		{name: "bad flags", parseErr: errors.New("unknown flag --x"), code: 64,
			stderr: "ep: unknown flag --x\nTry 'ep --help' for more information.\n"},
		{name: "help", exit: true, code: 0},
		{name: "serve fails", serveErr: errors.New("listen: in use"), code: 1, stderr: "ep: listen: in use\n"},
		{name: "served", code: 0},
	} {
		var stderr bytes.Buffer
		served := false
		code := RunEndpoint("ep", &stderr,
			func() (int, bool, error) { return 7, tc.exit, tc.parseErr },
			func(_ context.Context, opts int) error {
				served = opts == 7
				return tc.serveErr
			})
		if code != tc.code || stderr.String() != tc.stderr {
			t.Errorf("%s: exit %d, stderr %q; want %d, %q", tc.name, code, stderr.String(), tc.code, tc.stderr)
		}
		if want := tc.parseErr == nil && !tc.exit; served != want {
			t.Errorf("%s: served %v, want %v", tc.name, served, want)
		}
	}
}

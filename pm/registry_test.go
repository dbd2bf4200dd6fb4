package pm

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

type namedPlugin struct {
	PluginBase
	env Env
}

var errBroken = errors.New("bad setting")

// The registry lives as long as the test binary: plugins are registered
// once, as a plugin package's init does.
func init() {
	Register("test-ok", func(env Env) (Plugin, error) { return &namedPlugin{env: env}, nil })
	Register("test-broken", func(Env) (Plugin, error) { return nil, errBroken })
	Register("test-nil", func(Env) (Plugin, error) { return nil, nil })
}

func TestRegistry(t *testing.T) {

	if got := Plugins(); !slices.IsSorted(got) || !slices.Contains(got, "test-ok") || !slices.Contains(got, "test-broken") {
		t.Errorf("Plugins() = %v, want sorted and holding test-ok and test-broken", got)
	}

	tests := []struct {
		name    string
		wantErr string // substring; empty: success
		is      error
	}{
		{name: "test-ok"},
		{name: "test-broken", wantErr: "plugin/test-broken: bad setting", is: errBroken},
		{name: "test-nil", wantErr: "plugin/test-nil: factory returned no plugin"},
		{name: "nosuch", wantErr: `pm: unknown plugin "nosuch" (known: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlugin(tt.name, Env{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewPlugin: %v", err)
				}
				if np, ok := p.(*namedPlugin); !ok || np.env.Log == nil {
					t.Errorf("NewPlugin returned %#v, want the factory's plugin with a logger", p)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewPlugin error = %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("NewPlugin error %v does not wrap %v", err, tt.is)
			}
			if tt.name == "nosuch" && !strings.Contains(err.Error(), "test-ok") {
				t.Errorf("unknown-plugin error %q does not list the known plugins", err)
			}
		})
	}
}

func TestRegisterPanics(t *testing.T) {
	f := func(Env) (Plugin, error) { return PluginBase{}, nil }
	tests := []struct {
		name   string
		plugin string
		f      Factory
	}{
		{"duplicate", "test-ok", f},
		{"empty name", "", f},
		{"nil factory", "test-nil-factory", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", tt.plugin)
				}
			}()
			Register(tt.plugin, tt.f)
		})
	}
}

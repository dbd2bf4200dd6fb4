package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/policy"
)

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadSettingsFlagsOverrideFile(t *testing.T) {
	conf := writeFile(t, "mptcpd.conf", "[core]\nlog=journal\naddr-flags=signal\nnotify-flags=existing,skip_loopback\nmetrics-listen=:9257\noutage-hold=5s\n")
	s, err := loadSettings(Options{ConfigPath: conf, Log: "stderr", AddrFlags: "subflow,backup", MetricsListen: "[::1]:9258", OutageHold: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if s.conf.Log != "stderr" || s.conf.AddrFlags != mptcp.FlagSubflow|mptcp.FlagBackup || s.conf.MetricsListen != "[::1]:9258" || s.conf.OutageHold != 0 {
		t.Errorf("log %q flags %v metrics %q outage-hold %s: the command line must win", s.conf.Log, s.conf.AddrFlags, s.conf.MetricsListen, s.conf.OutageHold)
	}
	if _, err := os.Stat(DefaultPolicyPath); err != nil && s.policy.Source != "built-in" {
		t.Errorf("policy %q, want the built-in one", s.policy.Source)
	}
	// notify-flags without skip_link_local reaches the policy's settings.
	if st := s.policy.Settings; !st.SkipLoopback || st.SkipLinkLocal {
		t.Errorf("settings %+v: want skip-loopback only, from notify-flags", st)
	}
}

func TestLoadSettingsPolicyFile(t *testing.T) {
	pol := writeFile(t, "policy", "match name=eth*\n    flags subflow\n")
	s, err := loadSettings(Options{ConfigPath: filepath.Join(t.TempDir(), "missing.conf"), PolicyPath: pol, AddrFlags: "signal"})
	if err != nil {
		t.Fatal(err)
	}
	if s.policy.Source != pol || len(s.policy.Rules) != 1 {
		t.Errorf("policy %q with %d rules, want %s with 1", s.policy.Source, len(s.policy.Rules), pol)
	}
	if !strings.Contains(strings.Join(s.warnings, "\n"), "addr-flags is ignored") {
		t.Errorf("warnings %q: want one about addr-flags and the policy file", s.warnings)
	}
}

func TestLoadSettingsErrors(t *testing.T) {
	bad := writeFile(t, "policy", "match name=eth*\n    flags subflow signal fullmesh\n")
	missing := filepath.Join(t.TempDir(), "none.conf")
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"bad policy", Options{ConfigPath: missing, PolicyPath: bad}, bad + ":2"},
		{"unknown plugin", Options{ConfigPath: missing, PathManager: "spsi"}, "path-manager=spsi: unknown plugin (known: addr_adv, "},
		{"plugin not loaded", Options{ConfigPath: missing, PathManager: "sspi", LoadPlugins: "fullmesh"}, "path-manager=sspi is not among load-plugins=fullmesh"},
		{"unknown loaded plugin", Options{ConfigPath: missing, PathManager: "sspi", LoadPlugins: "sspi,turbo"}, `load-plugins: unknown plugin "turbo"`},
		{"bad flags", Options{ConfigPath: missing, AddrFlags: "subflow,turbo"}, "--addr-flags"},
		{"bad notify flags", Options{ConfigPath: missing, NotifyFlags: "everything"}, "--notify-flags"},
		{"bad log", Options{ConfigPath: missing, Log: "file"}, "--log=file"},
		{"short resync", Options{ConfigPath: missing, ResyncInterval: 1}, "--resync-interval"},
		{"metrics address", Options{ConfigPath: missing, MetricsListen: "localhost:9257"}, `--metrics-listen: "localhost:9257": "localhost" is not an IP address`},
		{"outage hold", Options{ConfigPath: missing, OutageHold: "forever"}, `--outage-hold: "forever" is not a duration or off`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSettings(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadSettings = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBaseDefaults(t *testing.T) {
	s, err := loadSettings(Options{ConfigPath: filepath.Join(t.TempDir(), "none.conf")})
	if err != nil {
		t.Fatal(err)
	}
	want := policy.DefaultConfig()
	if s.conf.StateDir != want.StateDir || s.conf.ResyncInterval != want.ResyncInterval || s.conf.RemoveOnExit {
		t.Errorf("defaults %+v", s.conf)
	}
}

package all

import (
	"slices"
	"testing"

	"github.com/mptcpd-go/mptcpd/pm"
)

func TestEveryPluginRegistered(t *testing.T) {
	got := pm.Plugins()
	for _, want := range []string{"announce", "fullmesh", "roaming", "sspi"} {
		if !slices.Contains(got, want) {
			t.Errorf("pm.Plugins() = %v, missing %q", got, want)
		}
	}
}

// Package all links every built-in plugin of the userspace path manager
// into a program: import it for its side effect, and each plugin's init
// registers it with pm.Register.
package all

import (
	// The built-in plugins, in alphabetical order.
	_ "github.com/mptcpd-go/mptcpd/pm/plugins/announce"
	_ "github.com/mptcpd-go/mptcpd/pm/plugins/fullmesh"
	_ "github.com/mptcpd-go/mptcpd/pm/plugins/roaming"
	_ "github.com/mptcpd-go/mptcpd/pm/plugins/sspi"
)

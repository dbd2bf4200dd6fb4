package pm

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// The plugin registry: plugins are compiled in and register themselves
// from an init function, as coredns plugins do; configuration then picks
// one by name.
var registry = struct {
	sync.RWMutex
	factories map[string]Factory
}{factories: make(map[string]Factory)}

// Register makes a plugin available under name. It is meant to be called
// from the init function of the plugin's package, and panics when name is
// empty or taken or f is nil: two plugins with one name is a build error.
func Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("pm: Register needs a name and a factory")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.factories[name]; dup {
		panic("pm: plugin " + name + " registered twice")
	}
	registry.factories[name] = f
}

// Plugins returns the names of the registered plugins, sorted.
func Plugins() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.factories))
	for n := range registry.factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// NewPlugin makes the plugin registered under name for env. env.Log
// (nil: discard) is labelled with the plugin's name. The factory's error
// is returned prefixed with "plugin/NAME: ".
func NewPlugin(name string, env Env) (Plugin, error) {
	registry.RLock()
	f, ok := registry.factories[name]
	registry.RUnlock()
	if !ok {
		known := "none"
		if names := Plugins(); len(names) > 0 {
			known = strings.Join(names, ", ")
		}
		return nil, fmt.Errorf("pm: unknown plugin %q (known: %s)", name, known)
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	env.Log = env.Log.With("plugin", name)
	p, err := f(env)
	if err != nil {
		return nil, fmt.Errorf("plugin/%s: %w", name, err)
	}
	if p == nil {
		return nil, fmt.Errorf("plugin/%s: factory returned no plugin", name)
	}
	return p, nil
}

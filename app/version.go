package app

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time with -ldflags "-X github.com/picketmon/picket/app.version=…".
var (
	version = ""
	commit  = ""
	date    = ""
)

// Version is the build's version: the stamped one, else the module version from the
// build info, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func buildCommit() (string, string) {
	c, d := commit, date
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.time":
				if d == "" {
					d = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return c, d
}

func runVersion(_ context.Context, env *Env, args []string) error {
	fs := newModeFlags("version", "version", "Prints the version, commit and build date of this binary.", env)
	if err := parseModeFlags(fs, args); err != nil {
		return err
	}
	c, d := buildCommit()
	fmt.Fprintf(env.Stdout, "picket %s (commit %s, built %s, %s %s/%s)\n", Version(), c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

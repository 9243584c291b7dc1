package app

import (
	"fmt"
	"testing"

	"github.com/picketmon/picket/node/nodetest"
)

func TestZZDebug(t *testing.T) {
	a := nodetest.Start(t)
	vars := loginTo(t, a)
	for _, f := range []string{"checks", "entities", "events", "filters", "handlers", "mutators", "silencing"} {
		r := runCLI(t, vars, "", "create", "-f", "/work/shared/testdata/sensu-examples/"+f+".yml")
		fmt.Printf("== %s (code %d)\n%s%s\n", f, r.code, r.stdout, r.stderr)
	}
}

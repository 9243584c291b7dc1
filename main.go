// Command picket is a monitoring system in one binary: server, agent and console.
package main

import (
	"context"
	"os"

	"github.com/picketmon/picket/app"
)

func main() {
	os.Exit(app.Main(context.Background(), os.Args[1:]))
}

package etcdx_test

import (
	"log/slog"
	"testing"
)

func TestStartupTime(t *testing.T) {
	t.Logf("fresh single-node member ready in %s (TestMain)", sharedStart)
	_ = slog.LevelInfo
}

//go:build !linux

package etcdx

import (
	"context"
	"log/slog"
)

// pinDatabase keeps the etcd database in memory on Linux only.
func pinDatabase(ctx context.Context, dataDir string, limit int64, log *slog.Logger) {}

// pinnable is 0 where pinDatabase does nothing.
func pinnable(quota int64) int64 { return 0 }

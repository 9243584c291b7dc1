package etcdx

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
)

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	quiet := new(atomic.Bool)
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	zl := zapToSlog(l, quiet).Named("raft").With(zap.String("member", "m1"))

	zl.Debug("debug is dropped")
	zl.Info("info becomes debug", zap.Int("n", 1))
	zl.Warn("warn stays warn", zap.Error(errors.New("boom")))
	zl.Error("error stays error", zap.Strings("urls", []string{"a", "b"}))
	zl.Warn("Running http and grpc server on single port. This is not recommended for production.")
	quiet.Store(true)
	zl.Error("setting up serving from embedded etcd failed.")

	want := []string{
		`level=DEBUG msg="info becomes debug" member=m1 logger=raft n=1`,
		`level=WARN msg="warn stays warn" member=m1 logger=raft error=boom`,
		`level=ERROR msg="error stays error" member=m1 logger=raft urls="[a b]"`,
		`level=DEBUG msg="Running http and grpc server on single port.`,
		`level=DEBUG msg="setting up serving from embedded etcd failed."`,
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %s\nwant it to contain %s", i, lines[i], w)
		}
	}

	buf.Reset()
	warnOnly := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	zl = zapToSlog(warnOnly, nil)
	if zl.Core().Enabled(zap.InfoLevel) {
		t.Error("info enabled for a warn-level slog handler")
	}
	zl.Info("hidden")
	zl.Warn("it isn't recommended to use default name, please set a value for --name.")
	if buf.Len() != 0 {
		t.Errorf("logged %q", buf.String())
	}

	zapToSlog(nil, nil).Error("discarded") // must not panic
}

package etcdx

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog returns a zap logger that writes into l one level quieter than zap's own
// levels for chatter: etcd logs a great deal at info, so info becomes slog debug and
// debug falls below slog debug; warnings and errors keep their level, except the
// warnings in benignWarnings and, once quiet is set (the member is being closed), every
// message below fatal, which are logged at debug. A nil l discards everything.
func zapToSlog(l *slog.Logger, quiet *atomic.Bool) *zap.Logger {
	if l == nil {
		return zap.NewNop()
	}
	return zap.New(&slogCore{h: l.Handler(), quiet: quiet})
}

// benignWarnings are etcd warnings about choices Picket makes on purpose (one port for
// gRPC and HTTP, the default member name of a single node, simple auth tokens) or about
// the election startElection triggers; they are logged at debug instead of on every start.
var benignWarnings = []string{
	"Running http and grpc server on single port",
	"it isn't recommended to use default name",
	"simple token is not cryptographically signed",
	"since there are still pending configuration changes to apply",
}

// slogLevel maps a zap level to the slog level it is logged at.
func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l < zapcore.InfoLevel:
		return slog.LevelDebug - 4
	case l == zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// slogCore is a zapcore.Core writing to a slog.Handler.
type slogCore struct {
	h     slog.Handler
	quiet *atomic.Bool
}

// level is the slog level of e, after demotions.
func (c *slogCore) level(e zapcore.Entry) slog.Level {
	lvl := slogLevel(e.Level)
	if lvl <= slog.LevelDebug || e.Level >= zapcore.DPanicLevel {
		return lvl
	}
	if c.quiet != nil && c.quiet.Load() {
		// Shutdown makes etcd log closed listeners and connections as errors.
		return slog.LevelDebug
	}
	if e.Level == zapcore.WarnLevel {
		for _, w := range benignWarnings {
			if strings.Contains(e.Message, w) {
				return slog.LevelDebug
			}
		}
	}
	return lvl
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	if len(fields) == 0 {
		return c
	}
	return &slogCore{h: c.h.WithAttrs(zapAttrs(fields)), quiet: c.quiet}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.h.Enabled(context.Background(), c.level(e)) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, c.level(e), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(zapAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

// zapAttrs converts zap fields to slog attributes, keeping their order.
func zapAttrs(fields []zapcore.Field) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		// zap.Error adds "error" and sometimes "errorVerbose"; keep the short form only.
		if v, ok := enc.Fields[f.Key]; ok {
			attrs = append(attrs, slog.Any(f.Key, v))
			continue
		}
		for k, v := range enc.Fields {
			attrs = append(attrs, slog.Any(k, v))
		}
	}
	return attrs
}

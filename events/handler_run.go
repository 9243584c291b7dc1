package events

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Handler run outcomes, as the pipeline reports them to its Observer.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"
	OutcomeTimeout = "timeout"
)

// sendSocket writes data to a tcp or udp socket within timeout, then closes it.
func sendSocket(ctx context.Context, network string, s *Socket, timeout time.Duration, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port)))
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return fmt.Errorf("%s %s: %w", network, addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write(data); err != nil {
		return fmt.Errorf("%s %s: %w", network, addr, err)
	}
	return nil
}

// handlerResult is what one handler run did, for the log and the metrics.
type handlerResult struct {
	outcome  string
	err      error
	status   int
	output   string
	duration time.Duration
}

// runHandler sends data to a pipe, tcp or udp handler.
func runHandler(ctx context.Context, h *Handler, data []byte) handlerResult {
	start := time.Now()
	timeout := timeoutOf(h.Timeout)
	var r handlerResult
	switch h.Type {
	case HandlerTCP, HandlerUDP:
		if h.Socket == nil {
			r.err = fmt.Errorf("handler %s has no socket", h.Metadata.Name)
			break
		}
		r.err = sendSocket(ctx, h.Type, h.Socket, timeout, data)
		if ne, ok := r.err.(interface{ Timeout() bool }); ok && ne.Timeout() {
			r.outcome = OutcomeTimeout
		}
	default:
		res := RunCommand(ctx, CommandSpec{Command: h.Command, Env: h.EnvVars, Stdin: data, Timeout: timeout})
		r.status, r.output = res.Status, res.Output
		switch {
		case res.Err != nil:
			r.err = res.Err
		case res.TimedOut:
			r.outcome, r.err = OutcomeTimeout, fmt.Errorf("timed out after %s", timeout)
		case res.Status != 0:
			r.err = fmt.Errorf("exit status %d", res.Status)
		}
	}
	r.duration = time.Since(start)
	switch {
	case r.outcome != "":
	case r.err != nil:
		r.outcome = OutcomeError
	default:
		r.outcome = OutcomeOK
	}
	return r
}

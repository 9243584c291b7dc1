package agentgw

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
)

// heldConn is an agent's connection on which the gateway can hold writes: while held,
// what the WebSocket library writes (it flushes every message to the connection) is
// gathered in memory, and release sends it in one system call. On loopback or a LAN a
// small write costs the sender the whole way through the TCP stack, about as much as
// the rest of an event's processing, so frames queued for one agent together (acks of
// a grouped commit, acks held by Config.AckDelay) go out together.
type heldConn struct {
	net.Conn
	mu sync.Mutex // guards the rest
	// held is set from hold until release has written everything gathered: the library
	// never waits on a write that release is doing, so its own deadlines (5 s for a
	// ping or close frame) do not run out behind a slow agent; the ping loop's check of
	// the writer covers release's write instead.
	held       bool
	buf, spare []byte
}

// maxHeldBuf bounds the buffer a connection keeps between batches (a few dozen acks);
// a larger one is dropped, so that thousands of agents do not each keep the largest
// batch they were ever sent.
const maxHeldBuf = 4 << 10

// Write sends p, or gathers it while writes are held. The library calls it under its
// own frame lock, so what is gathered is in the order the frames were written, and a
// write that goes straight to the connection has finished before any frame after it
// is gathered.
func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.held {
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// hold gathers writes until release.
func (c *heldConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// release sends what was gathered since hold, in one write, and what is gathered while
// it writes (a ping, a close frame) in the next, then ends the hold. After a failed
// write it drops the rest: the connection is broken.
func (c *heldConn) release() error {
	for {
		c.mu.Lock()
		b := c.buf
		if len(b) == 0 {
			c.held = false
			c.mu.Unlock()
			return nil
		}
		c.buf, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		_, err := c.Conn.Write(b)
		c.mu.Lock()
		if cap(b) <= maxHeldBuf {
			c.spare = b[:0]
		}
		if err != nil {
			c.held, c.buf = false, nil
			c.mu.Unlock()
			return err
		}
		c.mu.Unlock()
	}
}

// heldListener wraps the connections it accepts in heldConn.
type heldListener struct{ net.Listener }

func (l heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &heldConn{Conn: c}, nil
}

// Listener wraps the agent port's listener (before TLS, when there is TLS) so the
// gateway can send frames queued for one agent together; the http.Server serving the
// gateway must also set ConnContext to the gateway's. Without it frames are sent one
// write each.
func Listener(ln net.Listener) net.Listener { return heldListener{ln} }

type connKey struct{}

// ConnContext is for the gateway's http.Server: it hands each request the connection
// Listener wrapped.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if hc, ok := c.(*heldConn); ok {
		return context.WithValue(ctx, connKey{}, hc)
	}
	return ctx
}

func heldConnOf(ctx context.Context) *heldConn {
	hc, _ := ctx.Value(connKey{}).(*heldConn)
	return hc
}

// CloseWrite half-closes the connection when it can, as net/http does before closing a
// connection it answered with an error.
func (c *heldConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

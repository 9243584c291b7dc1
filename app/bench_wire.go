package app

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// benchConn is the bench's own WebSocket client (RFC 6455) for its simulated agents. It
// speaks what an agent's coder/websocket connection speaks on the wire (the same
// handshake and headers, masked binary frames out, pings answered), but writes a frame
// with one append and one syscall and reads one without a hand-off between goroutines:
// at 20,000 events/s the library's per-frame locking and wake-ups were a third of the
// bench's CPU, taken from the server it measures on the same machine.
type benchConn struct {
	nc net.Conn
	br *bufio.Reader

	wmu    sync.Mutex
	wbuf   []byte
	closed bool // a close frame was sent; under wmu

	limit int
	msg   []byte   // the message being read; reused
	done  chan any // closed when the reader saw the end of the connection
	once  sync.Once
}

// The opcodes of RFC 6455 §5.2.
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xA
)

// wsGUID is the key suffix of the handshake's accept hash (RFC 6455 §1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// benchDial opens a WebSocket to rawURL (ws:// or wss://) with the headers h, through
// dialer, and completes the handshake within ctx.
func benchDial(ctx context.Context, rawURL string, h http.Header, dialer *net.Dialer) (*benchConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	host := u.Host
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	case "wss":
		u.Scheme = "https"
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
	default:
		return nil, fmt.Errorf("backend URL %q: the scheme must be ws or wss", rawURL)
	}
	nc, err := dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "https" {
		tc := tls.Client(nc, &tls.Config{ServerName: u.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	c, err := benchHandshake(ctx, nc, u, h)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func benchHandshake(ctx context.Context, nc net.Conn, u *url.URL, h http.Header) (*benchConn, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	// A cancelled context ends a handshake under way too.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if stop() {
			_ = nc.SetDeadline(time.Time{})
		}
	}()
	key := base64.StdEncoding.EncodeToString(randBytes(16))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header = h.Clone()
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	if err := req.Write(nc); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return nil, fmt.Errorf("expected handshake response status code 101 but got %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return nil, fmt.Errorf("handshake: Upgrade header %q, want websocket", resp.Header.Get("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return nil, fmt.Errorf("handshake: Connection header %q, want Upgrade", resp.Header.Get("Connection"))
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return nil, fmt.Errorf("handshake: the server chose extensions %q that were not offered", ext)
	}
	return &benchConn{nc: nc, br: br, limit: 1 << 20, done: make(chan any)}, nil
}

// headerHasToken reports whether the comma-separated values of header key in h include
// token, case-insensitively.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// SetReadLimit bounds the size of a message read.
func (c *benchConn) SetReadLimit(n int) { c.limit = n }

// Write sends payload as one masked binary frame.
func (c *benchConn) Write(payload []byte) error {
	return c.writeFrame(wsBinary, payload)
}

func (c *benchConn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if op == wsClose {
		c.closed = true
	}
	b := c.wbuf[:0]
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	// The mask only has to keep intermediaries from reading the frame as something
	// else; a fast pseudo-random key does that.
	key := rand.Uint32()
	b = binary.LittleEndian.AppendUint32(b, key)
	start := len(b)
	b = append(b, payload...)
	maskBytes(b[start:], key)
	c.wbuf = b
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil // a rare big frame's buffer is not kept
	}
	_, err := c.nc.Write(b)
	return err
}

// maskBytes XORs p with the 4-byte key, as laid out little-endian on the wire.
func maskBytes(p []byte, key uint32) {
	k8 := uint64(key) | uint64(key)<<32
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k8)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= byte(key >> (8 * (i & 3)))
	}
}

// Read returns the next text or binary message, valid until the next Read. It answers
// pings; when the server closes, it answers the close frame and returns io.EOF (as it
// does when the connection ends without one).
func (c *benchConn) Read() ([]byte, error) {
	c.msg = c.msg[:0]
	inMessage := false
	for {
		fin, op, payload, err := c.readFrame()
		if err != nil {
			c.end()
			return nil, err
		}
		switch op {
		case wsPing:
			if err := c.writeFrame(wsPong, payload); err != nil && !errors.Is(err, net.ErrClosed) {
				c.end()
				return nil, err
			}
			continue
		case wsPong:
			continue
		case wsClose:
			_ = c.writeFrame(wsClose, payload[:min(len(payload), 2)])
			c.end()
			return nil, io.EOF
		case wsText, wsBinary:
			if inMessage {
				c.end()
				return nil, errors.New("websocket: a new message began inside a fragmented one")
			}
			inMessage = true
		case wsContinuation:
			if !inMessage {
				c.end()
				return nil, errors.New("websocket: continuation frame without a message")
			}
		default:
			c.end()
			return nil, fmt.Errorf("websocket: unknown opcode %#x", op)
		}
		if len(c.msg)+len(payload) > c.limit {
			c.end()
			return nil, fmt.Errorf("websocket: message over the read limit of %d bytes", c.limit)
		}
		c.msg = append(c.msg, payload...)
		if fin {
			return c.msg, nil
		}
	}
}

// readFrame reads one frame; its payload is valid until the next read.
func (c *benchConn) readFrame() (fin bool, op byte, payload []byte, err error) {
	var hdr [14]byte
	if _, err := io.ReadFull(c.br, hdr[:2]); err != nil {
		return false, 0, nil, err
	}
	fin, op = hdr[0]&0x80 != 0, hdr[0]&0x0F
	if hdr[0]&0x70 != 0 {
		return false, 0, nil, errors.New("websocket: reserved bits set without an extension")
	}
	if hdr[1]&0x80 != 0 {
		return false, 0, nil, errors.New("websocket: the server masked a frame (RFC 6455 §5.1)")
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, hdr[2:4]); err != nil {
			return false, 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
	case 127:
		if _, err := io.ReadFull(c.br, hdr[2:10]); err != nil {
			return false, 0, nil, err
		}
		n = binary.BigEndian.Uint64(hdr[2:10])
	}
	if op >= wsClose && (n > 125 || !fin) {
		return false, 0, nil, errors.New("websocket: control frame fragmented or over 125 bytes")
	}
	if n > uint64(c.limit) {
		return false, 0, nil, fmt.Errorf("websocket: frame of %d bytes over the read limit of %d", n, c.limit)
	}
	// Frames are read into the free room after the message being assembled.
	c.msg = slices.Grow(c.msg, int(n))
	buf := c.msg[len(c.msg) : len(c.msg)+int(n)]
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return false, 0, nil, err
	}
	if op >= wsClose {
		// A control frame may arrive between the frames of a message: its payload must
		// not stay where the message's next frame goes.
		payload = append([]byte(nil), buf...)
		return fin, op, payload, nil
	}
	return fin, op, buf, nil
}

// end marks the connection finished for Close once the reader has seen its end.
func (c *benchConn) end() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

// Close sends a normal-closure frame with reason (at most 123 bytes, ASCII) and waits
// for the server's answer, which the goroutine calling Read sees, then closes the
// socket. It takes at most 5 s in all: a write blocked on a server that stopped reading
// counts against them, and with no goroutine reading it waits them out.
func (c *benchConn) Close(reason string) error {
	deadline := time.Now().Add(5 * time.Second)
	_ = c.nc.SetWriteDeadline(deadline)
	payload := binary.BigEndian.AppendUint16(nil, 1000)
	payload = append(payload, reason[:min(len(reason), 123)]...)
	err := c.writeFrame(wsClose, payload)
	if err == nil || errors.Is(err, net.ErrClosed) {
		// Sent now or earlier (an answer to the server's close): wait for the end.
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
		err = nil
	}
	c.end()
	return err
}

package app

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestBenchConnAgainstLibrary runs the bench's own client against a coder/websocket
// server, the library the gateway uses: messages of every length encoding both ways,
// a message the server writes in several frames, the server's pings, and both ways of
// closing.
func TestBenchConnAgainstLibrary(t *testing.T) {
	serverErr, pingErr := make(chan error, 1), make(chan error, 1)
	closeStatus := make(chan websocket.StatusCode, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test") != "yes" {
			http.Error(w, "missing X-Test header", http.StatusUnauthorized)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			serverErr <- err
			return
		}
		c.SetReadLimit(1 << 20)
		ctx := context.Background()
		serverErr <- func() error {
			// Echo three messages back: 10 B, 300 B (16-bit length), 70,000 B (64-bit).
			for range 3 {
				typ, msg, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if err := c.Write(ctx, typ, msg); err != nil {
					return err
				}
			}
			// A message in three frames, with a ping between the first two.
			w, err := c.Writer(ctx, websocket.MessageBinary)
			if err != nil {
				return err
			}
			if _, err := w.Write([]byte("one,")); err != nil {
				return err
			}
			go func() { pingErr <- c.Ping(ctx) }()
			time.Sleep(50 * time.Millisecond)
			if _, err := w.Write([]byte("two,")); err != nil {
				return err
			}
			if _, err := w.Write([]byte("three")); err != nil {
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
			// The client closes next.
			_, _, err = c.Read(ctx)
			closeStatus <- websocket.CloseStatus(err)
			return nil
		}()
	}))
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := benchDial(ctx, wsURL, http.Header{}, &net.Dialer{}); err == nil || !strings.Contains(err.Error(), "401: missing X-Test header") {
		t.Fatalf("dial without the header: %v, want the 401 and its body", err)
	}
	c, err := benchDial(ctx, wsURL, http.Header{"X-Test": {"yes"}}, &net.Dialer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 300, 70_000} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		msg[0] = 'x'
		if err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got, err := c.Read()
		if err != nil {
			t.Fatalf("read back %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes came back as %d different bytes", n, len(got))
		}
	}
	got, err := c.Read()
	if err != nil || string(got) != "one,two,three" {
		t.Fatalf("fragmented message: %q, %v", got, err)
	}
	// The server's ping was answered while the message was read.
	if err := <-pingErr; err != nil {
		t.Fatalf("server's ping: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Read(); done <- err }()
	if err := c.Close("bench done"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if s := <-closeStatus; s != websocket.StatusNormalClosure {
		t.Errorf("server saw close status %v, want normal closure", s)
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server: %v", err)
	}
	if err := <-done; err == nil {
		t.Error("Read after Close returned no error")
	}
	if err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// TestBenchConnServerCloses: a close from the server ends Read with io.EOF, and the
// client answers it, so the server's close handshake completes.
func TestBenchConnServerCloses(t *testing.T) {
	closed := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			closed <- err
			return
		}
		closed <- c.Close(websocket.StatusGoingAway, "server stopping")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := benchDial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), http.Header{}, &net.Dialer{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(); err != io.EOF {
		t.Fatalf("Read: %v, want io.EOF", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("server's close handshake: %v", err)
	}
}

func TestMaskBytes(t *testing.T) {
	for n := range 20 {
		p := bytes.Repeat([]byte{0xA5}, n)
		want := make([]byte, n)
		key := [4]byte{1, 2, 3, 4}
		for i := range want {
			want[i] = 0xA5 ^ key[i%4]
		}
		maskBytes(p, 0x04030201)
		if !bytes.Equal(p, want) {
			t.Fatalf("n=%d: %x, want %x", n, p, want)
		}
	}
}

// rawWSServer accepts one connection, answers its handshake with status 101 and the
// extra header lines (each ending in \r\n), then hands the connection to after.
func rawWSServer(t *testing.T, extra string, after func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		req, err := http.ReadRequest(bufio.NewReader(nc))
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + wsGUID))
		fmt.Fprintf(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
			base64.StdEncoding.EncodeToString(sum[:]), extra)
		after(nc)
	}()
	return "ws://" + ln.Addr().String() + "/"
}

// TestBenchConnStrict: the client refuses a handshake without "Connection: Upgrade" and
// a frame the server masked, naming what is wrong.
func TestBenchConnStrict(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := rawWSServer(t, "", func(net.Conn) {})
	if _, err := benchDial(ctx, url, http.Header{}, &net.Dialer{}); err == nil || !strings.Contains(err.Error(), "Connection header") {
		t.Fatalf("handshake without Connection: Upgrade: %v", err)
	}
	url = rawWSServer(t, "Connection: keep-alive, Upgrade\r\n", func(nc net.Conn) {
		// A binary frame of 2 bytes, masked with key 0.
		nc.Write([]byte{0x82, 0x82, 0, 0, 0, 0, 'h', 'i'})
		time.Sleep(time.Second)
	})
	c, err := benchDial(ctx, url, http.Header{}, &net.Dialer{})
	if err != nil {
		t.Fatalf("handshake with Connection: keep-alive, Upgrade: %v", err)
	}
	if _, err := c.Read(); err == nil || !strings.Contains(err.Error(), "masked") {
		t.Fatalf("masked frame from the server: %v", err)
	}
}

// TestBenchConnDialCancelled: cancelling the context ends a handshake the server never
// answers, also without a deadline.
func TestBenchConnDialCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if nc, err := ln.Accept(); err == nil {
			defer nc.Close()
			time.Sleep(10 * time.Second)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	if _, err := benchDial(ctx, "ws://"+ln.Addr().String()+"/", http.Header{}, &net.Dialer{}); err == nil {
		t.Fatal("handshake with a silent server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled handshake took %s", d)
	}
}

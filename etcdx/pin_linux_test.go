//go:build linux

package etcdx

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lockedKB reads this process's locked memory (VmLck) in KB.
func lockedKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmLck:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmLck in /proc/self/status")
	return 0
}

// TestDBPinFollowsTheFile: the pin locks the database file as it grows, in pieces,
// lets a replaced file go for the new one, stops at its limit, and releases all.
func TestDBPinFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "member", "snap", "db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	const mb = 1 << 20
	write := func(p string, size int) {
		t.Helper()
		if err := os.WriteFile(p, bytes.Repeat([]byte{1}, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	p := &dbPin{path: path, limit: 12 * mb, log: slog.New(slog.NewTextHandler(&logs, nil))}
	defer p.release()
	base := lockedKB(t)

	if err := p.step(); err != nil || p.pinned != 0 {
		t.Fatalf("no file yet: err %v, pinned %d", err, p.pinned)
	}
	write(path, 4*mb+100) // the partial last page waits for the file to grow
	if err := p.step(); err != nil {
		if strings.Contains(err.Error(), "locked-memory limit") {
			t.Skipf("this process may not lock memory: %v", err)
		}
		t.Fatal(err)
	}
	if p.pinned != 4*mb || lockedKB(t)-base != 4096 {
		t.Fatalf("pinned %d bytes, %d KB locked; want 4 MB", p.pinned, lockedKB(t)-base)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte{2}, 4*mb))
	f.Close()
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if p.pinned != 8*mb || len(p.maps) != 2 || lockedKB(t)-base != 8192 {
		t.Fatalf("after growth: pinned %d in %d pieces, %d KB locked; want 8 MB in 2", p.pinned, len(p.maps), lockedKB(t)-base)
	}

	// Defragmentation writes a new file and renames it over the old one.
	write(path+".new", 20*mb)
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if p.pinned != 12*mb || len(p.maps) != 1 || lockedKB(t)-base != 12288 {
		t.Fatalf("after the file was replaced: pinned %d in %d pieces, %d KB locked; want the limit, 12 MB, in 1", p.pinned, len(p.maps), lockedKB(t)-base)
	}
	if !strings.Contains(logs.String(), "larger than Picket keeps in memory") {
		t.Errorf("no warning about the limit; logs:\n%s", logs.String())
	}
	// A member wiped to rejoin loses its file: nothing of it stays locked.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	if got := lockedKB(t) - base; got != 0 || p.file != nil {
		t.Fatalf("%d KB still locked after the file was removed (file open: %v)", got, p.file != nil)
	}
	write(path, 1*mb)
	if err := p.step(); err != nil {
		t.Fatal(err)
	}
	p.release()
	if got := lockedKB(t) - base; got != 0 {
		t.Fatalf("%d KB still locked after release", got)
	}
}

// TestPinDatabaseStopsWithItsContext: pinDatabase locks at once and releases when its
// context ends.
func TestPinDatabaseStopsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "member", "snap", "db")
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	base := lockedKB(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pinDatabase(ctx, dir, 1<<30, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for lockedKB(t)-base < 2048 {
		select {
		case <-done:
			t.Skip("pinDatabase stopped at once: this process may not lock memory")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d KB locked after 5 s, want 2048", lockedKB(t)-base)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := lockedKB(t) - base; got != 0 {
		t.Fatalf("%d KB still locked after the context ended", got)
	}
}

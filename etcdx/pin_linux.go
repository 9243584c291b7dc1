//go:build linux

package etcdx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// dbPin keeps the embedded member's database file in memory, so that reading pages
// written long ago never waits on the disk. etcd reads its database through a memory
// map; under a high write rate the pages of old revisions sit untouched until the
// history is compacted, and the kernel may evict them meanwhile. The compaction then
// reads them back one page fault at a time while it holds the lock that every write's
// apply needs: at 20,000 events/s, 51,000 major faults in one five-minute hold, and
// writes stalled for seconds (BENCHMARKS.md, fourteenth session).
//
// dbPin maps the file read-only a second time and locks that mapping (mlock), in
// pieces as the file grows, so that each second locks only what was added; etcd's own
// memory-mlock option locks the whole file again on every growth, stalling writes
// while it does. Pages locked through any mapping of a file stay in the page cache.
// It stops, releasing what it locked, when the kernel refuses (a memlock limit) and
// says what to do, and it locks at most limit bytes.
type dbPin struct {
	path  string
	limit int64
	log   *slog.Logger

	file   *os.File
	ino    uint64
	maps   [][]byte
	pinned int64
	capped bool
}

// pinInterval is how often dbPin looks for growth of the file.
const pinInterval = time.Second

// pinDatabase keeps the database under dataDir in memory until ctx ends, up to limit
// bytes (none when limit is 0 or less). It returns when ctx ends, having released
// what it locked, or at once when the kernel refuses to lock.
func pinDatabase(ctx context.Context, dataDir string, limit int64, log *slog.Logger) {
	if limit <= 0 {
		return
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &dbPin{path: filepath.Join(dataDir, "member", "snap", "db"), limit: limit, log: log}
	defer p.release()
	t := time.NewTicker(pinInterval)
	defer t.Stop()
	for {
		if err := p.step(); err != nil {
			log.Warn("the etcd database is not kept in memory: "+err.Error(), "file", p.path)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step locks what the file gained since the last step. An error means the kernel
// refused: pinning stops.
func (p *dbPin) step() error {
	st, err := os.Stat(p.path)
	if err != nil {
		// Not created yet, or removed (a member wiped to rejoin): hold nothing of a
		// file that is gone, and look again next time.
		p.release()
		return nil
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	if p.file != nil && ino != p.ino {
		// A new file took the name (defragmentation, a restore): let the old one go.
		p.release()
	}
	if p.file == nil {
		f, err := os.Open(p.path)
		if err != nil {
			return nil
		}
		p.file, p.ino = f, ino
	}
	page := int64(os.Getpagesize())
	size := st.Size() &^ (page - 1)
	if size > p.limit {
		if !p.capped {
			p.log.Warn("the etcd database is larger than Picket keeps in memory: the rest may be read from disk",
				"file", p.path, "size_bytes", st.Size(), "kept_bytes", p.limit&^(page-1))
			p.capped = true
		}
		size = p.limit &^ (page - 1)
	}
	if size <= p.pinned {
		return nil
	}
	b, err := syscall.Mmap(int(p.file.Fd()), p.pinned, int(size-p.pinned), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map %d bytes at %d: %w", size-p.pinned, p.pinned, err)
	}
	if err := syscall.Mlock(b); err != nil {
		_ = syscall.Munmap(b)
		if errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("lock %d MB in memory: %w; raise the locked-memory limit (LimitMEMLOCK=infinity in the systemd unit, as the packaged one has, or ulimit -l) or set etcd-pin-database: false", (p.pinned+int64(len(b)))>>20, err)
		}
		return fmt.Errorf("lock %d bytes at %d in memory: %w", len(b), p.pinned, err)
	}
	p.maps = append(p.maps, b)
	p.pinned = size
	return nil
}

// release unlocks and unmaps everything and closes the file.
func (p *dbPin) release() {
	for _, b := range p.maps {
		_ = syscall.Munmap(b) // unmapping unlocks
	}
	p.maps, p.pinned = nil, 0
	if p.file != nil {
		p.file.Close()
		p.file = nil
	}
}

// pinnable is the most of the database a server keeps in memory: half of the
// machine's memory, at most quota.
func pinnable(quota int64) int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	return min(quota, int64(si.Totalram)*int64(si.Unit)/2)
}

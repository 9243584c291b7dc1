package etcdx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// ErrLocked reports that the etcd data directory is held by another running process.
var ErrLocked = errors.New("data dir is locked")

// lockedError is the error of a held lock; it wraps ErrLocked without repeating its text.
type lockedError struct{ msg string }

func (e *lockedError) Error() string { return e.msg }
func (e *lockedError) Unwrap() error { return ErrLocked }

// dirLock is an exclusive lock on an etcd data directory, held as a lock file beside it
// (dir+".lock") so that it exists before etcd creates the directory and survives a wipe
// of the directory itself.
type dirLock struct {
	f    *fileutil.LockedFile
	path string
}

// lockDir takes the lock for the data dir dir without waiting. The lock is released by
// unlock or when the process exits, so a crashed server never leaves a stale lock.
func lockDir(dir string) (*dirLock, error) {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	path := dir + ".lock"
	f, err := fileutil.TryLockFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fileutil.ErrLocked) {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(" by pid %d", pid)
			}
		}
		return nil, &lockedError{fmt.Sprintf("state dir %s is in use by another picket server (lock %s held%s); stop it or choose another --state-dir",
			parent, path, holder)}
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is only a hint for the error message above; failing to write it is harmless.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f, path: path}, nil
}

// unlock releases the lock. The lock file is left in place: removing it would let a
// process that opened it just before the removal hold a lock on a deleted file.
func (l *dirLock) unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// LockHolder reports whether the data dir dir is locked by a running server, and that
// server's pid when it wrote one. It takes the lock for a moment when it is free.
func LockHolder(dir string) (pid int, held bool, err error) {
	l, err := lockDir(dir)
	if errors.Is(err, ErrLocked) {
		if b, rerr := os.ReadFile(filepath.Clean(dir) + ".lock"); rerr == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return pid, true, nil
	}
	if err != nil {
		return 0, false, err
	}
	return 0, false, l.unlock()
}

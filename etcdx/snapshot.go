package etcdx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
)

// SaveSnapshot streams a snapshot of the backend of the member cli talks to into w and
// returns its size. The stream ends with etcd's SHA-256 checksum, which RestoreSnapshot
// verifies.
func SaveSnapshot(ctx context.Context, cli *clientv3.Client, w io.Writer) (int64, error) {
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("snapshot: %w", err)
	}
	if n == 0 {
		return 0, errors.New("snapshot: etcd sent an empty snapshot")
	}
	return n, nil
}

// SaveSnapshotFile writes a snapshot to path atomically (a temporary file renamed into
// place once complete), mode 0600.
func SaveSnapshotFile(ctx context.Context, cli *clientv3.Client, path string) (int64, error) {
	return WriteFileAtomic(path, func(w io.Writer) (int64, error) { return SaveSnapshot(ctx, cli, w) })
}

// WriteFileAtomic writes path through a temporary file in the same directory, mode 0600,
// synced and renamed into place only when write succeeds.
func WriteFileAtomic(path string, write func(io.Writer) (int64, error)) (int64, error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.part")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return 0, err
	}
	n, err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	return n, os.Rename(f.Name(), path)
}

// SnapshotInfo describes a snapshot file.
type SnapshotInfo struct {
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"total_keys"`
	TotalSize int64  `json:"total_size"`
	Hash      uint32 `json:"hash"`
	Version   string `json:"version,omitempty"`
}

// SnapshotStatus reads a snapshot file's revision, key count and size.
func SnapshotStatus(path string) (SnapshotInfo, error) {
	st, err := snapshot.NewV3(nil).Status(path)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %s: %w", path, err)
	}
	return SnapshotInfo{Revision: st.Revision, TotalKeys: st.TotalKey, TotalSize: st.TotalSize, Hash: st.Hash, Version: st.Version}, nil
}

// RestoreConfig names the single member a snapshot is restored into.
type RestoreConfig struct {
	// Snapshot is the snapshot file.
	Snapshot string
	// Dir is the new etcd data dir (<state-dir>/etcd); it must not exist yet.
	Dir string
	// Name and PeerURLs are the member's; InitialCluster defaults to Name=PeerURLs and
	// Token to a new random token, so the restored cluster is a new cluster.
	Name           string
	PeerURLs       []string
	InitialCluster string
	Token          string
	Logger         *slog.Logger
}

// RestoreSnapshot creates a new single-member data dir from a snapshot: a new cluster
// (new cluster and member IDs) holding the snapshot's keys, from which a cluster can be
// rebuilt by adding members. It verifies the snapshot's checksum.
func RestoreSnapshot(cfg RestoreConfig) error {
	if cfg.Dir == "" || cfg.Snapshot == "" || cfg.Name == "" || len(cfg.PeerURLs) == 0 {
		return errors.New("restore: snapshot, dir, name and peer URLs are required")
	}
	if _, err := os.Stat(cfg.Dir); err == nil {
		return fmt.Errorf("restore: %s already exists; restore into a new state dir (or move the old data dir away)", cfg.Dir)
	}
	if _, err := os.Stat(cfg.Snapshot); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	ic := cfg.InitialCluster
	if ic == "" {
		for _, u := range cfg.PeerURLs {
			if ic != "" {
				ic += ","
			}
			ic += cfg.Name + "=" + u
		}
	}
	tok := cfg.Token
	if tok == "" {
		tok = randomToken()
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Dir), 0o700); err != nil {
		return err
	}
	err := snapshot.NewV3(zapToSlog(cfg.Logger, nil)).Restore(snapshot.RestoreConfig{
		SnapshotPath:        cfg.Snapshot,
		Name:                cfg.Name,
		OutputDataDir:       cfg.Dir,
		PeerURLs:            cfg.PeerURLs,
		InitialCluster:      ic,
		InitialClusterToken: tok,
	})
	if err != nil {
		return fmt.Errorf("restore %s: %w", cfg.Snapshot, err)
	}
	return os.Chmod(cfg.Dir, 0o700)
}

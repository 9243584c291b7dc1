package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// JoinFileName is the file in a server's state dir that tells its next start how to join
// a cluster: `picket cluster replace` writes it after adding the member back, and
// `picket server` reads it when its etcd data dir is empty, so the member starts with
// etcd-initial-cluster-state: existing and the right etcd-initial-cluster without the
// operator editing backend.yml. The server deletes it once the member has started.
const JoinFileName = "cluster-join.json"

// Join is the content of the join file.
type Join struct {
	// Name is the member's name (etcd-name) the join was prepared for.
	Name string `json:"name"`
	// MemberID is the ID the cluster gave the member when it was added (hex).
	MemberID string `json:"member_id"`
	// InitialCluster is the etcd-initial-cluster to start with; the state is always
	// "existing".
	InitialCluster string    `json:"initial_cluster"`
	Created        time.Time `json:"created"`
}

// WriteJoin writes j into stateDir (mode 0600).
func WriteJoin(stateDir string, j Join) error {
	if j.Created.IsZero() {
		j.Created = time.Now().UTC()
	}
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(stateDir, JoinFileName), append(data, '\n'))
}

// ReadJoin reads the join file of stateDir; it returns nil and no error when there is none.
func ReadJoin(stateDir string) (*Join, error) {
	path := filepath.Join(stateDir, JoinFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j Join
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it if no replace is in progress)", path, err)
	}
	return &j, nil
}

// RemoveJoin deletes the join file of stateDir, if any.
func RemoveJoin(stateDir string) error {
	err := os.Remove(filepath.Join(stateDir, JoinFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// writeFile replaces path atomically with data, mode 0600.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FileName is the name of the CLI configuration file inside the configuration directory.
const FileName = "cli.json"

// DefaultAPIURL is the API address used when neither a flag, the environment nor the
// stored configuration names one.
const DefaultAPIURL = "http://127.0.0.1:8080"

// Config is what `picket login` stores so that later commands reach the same API with the
// same session. It holds live tokens, so it is written with mode 0600 in a 0700 directory.
type Config struct {
	APIURL                string `json:"api_url"`
	Username              string `json:"username,omitempty"`
	AccessToken           string `json:"access_token,omitempty"`
	RefreshToken          string `json:"refresh_token,omitempty"`
	ExpiresAt             int64  `json:"expires_at,omitempty"`
	Namespace             string `json:"namespace,omitempty"`
	Format                string `json:"format,omitempty"`
	TrustedCAFile         string `json:"trusted_ca_file,omitempty"`
	InsecureSkipTLSVerify bool   `json:"insecure_skip_tls_verify,omitempty"`
}

// DefaultDir returns the directory the CLI configuration lives in: $PICKET_CONFIG_DIR when
// set, else "picket" under the user's configuration directory (os.UserConfigDir).
// getenv reads the environment; nil means os.Getenv.
func DefaultDir(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if d := getenv("PICKET_CONFIG_DIR"); d != "" {
		return d, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the configuration directory: %w; set PICKET_CONFIG_DIR", err)
	}
	return filepath.Join(base, "picket"), nil
}

// Load reads the configuration stored in dir. A missing file is not an error: it yields an
// empty Config, which is what a user who never logged in has.
func Load(dir string) (*Config, error) {
	path := filepath.Join(dir, FileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("read %s: %w (delete it and run 'picket login' again)", path, err)
	}
	return &c, nil
}

// Save writes the configuration to dir, creating dir with mode 0700 if needed. The file is
// replaced atomically and always ends up with mode 0600, because it holds tokens.
func (c *Config) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(dir, FileName+".*.tmp")
	if err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save configuration: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save configuration: %w", err)
	}
	return nil
}

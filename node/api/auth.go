package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// Role is one of the built-in roles. A user's role follows from its groups.
type Role string

// The built-in roles, from most to least privileged.
const (
	RoleClusterAdmin Role = "cluster-admin"
	RoleEditor       Role = "editor"
	RoleViewer       Role = "viewer"
	RoleAgent        Role = "agent"
	roleNone         Role = ""
)

// groupRoles maps group names to roles. The Sensu default group names are accepted
// alongside the role names themselves, so imported users keep their rights.
var groupRoles = map[string]Role{
	"cluster-admin": RoleClusterAdmin, "cluster-admins": RoleClusterAdmin,
	"editor": RoleEditor, "editors": RoleEditor,
	"viewer": RoleViewer, "viewers": RoleViewer,
	"agent": RoleAgent, "agents": RoleAgent, "system:agents": RoleAgent,
}

var roleRank = map[Role]int{RoleClusterAdmin: 4, RoleEditor: 3, RoleViewer: 2, RoleAgent: 1}

// RoleOf returns the most privileged role granted by any of the groups.
func RoleOf(groups []string) Role {
	best := roleNone
	for _, g := range groups {
		if r, ok := groupRoles[g]; ok && roleRank[r] > roleRank[best] {
			best = r
		}
	}
	return best
}

// Principal is the authenticated caller of a request.
type Principal struct {
	Username string
	Groups   []string
	Role     Role
	// TokenID is the access token's ID, "" for API keys.
	TokenID string
}

// Tokens is the answer of /auth and /auth/token.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	ExpiresAt    int64  `json:"expires_at"`
	RefreshToken string `json:"refresh_token"`
}

// refreshRecord is what etcd keeps per issued access token: the hash of its refresh
// token. Logging out deletes it, which also revokes the access token at once.
type refreshRecord struct {
	Username    string `json:"username"`
	RefreshHash string `json:"refresh_hash"`
	ExpiresAt   int64  `json:"expires_at"`
}

var (
	errBadCredentials = errors.New("wrong username or password")
	errUnauthorized   = errors.New("unauthorized")
)

// Auth issues and checks tokens. Its signing secret lives in etcd so that every server
// of a cluster accepts every other server's tokens.
type Auth struct {
	store      *etcdx.Store
	secret     []byte
	accessTTL  time.Duration
	refreshTTL time.Duration
}

var secretKey = etcdx.Key("auth", "jwt-secret")

// NewAuth loads the token signing secret from etcd, creating it on first use.
func NewAuth(ctx context.Context, store *etcdx.Store, accessTTL, refreshTTL time.Duration) (*Auth, error) {
	a := &Auth{store: store, accessTTL: accessTTL, refreshTTL: refreshTTL}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if _, err := store.Create(ctx, secretKey, []byte(hex.EncodeToString(secret))); err != nil && !errors.Is(err, etcdx.ErrExists) {
		return nil, fmt.Errorf("create token secret: %w", err)
	}
	kv, err := store.Get(ctx, secretKey)
	if err != nil {
		return nil, fmt.Errorf("read token secret: %w", err)
	}
	if a.secret, err = hex.DecodeString(string(kv.Value)); err != nil || len(a.secret) < 32 {
		return nil, fmt.Errorf("token secret at %s is corrupt; delete the key to generate a new one", secretKey)
	}
	return a, nil
}

// PasswordCost is the bcrypt cost of new password hashes. Tests lower it, since bcrypt
// at the default cost dominates their run time under the race detector.
var PasswordCost = bcrypt.DefaultCost

// HashPassword returns the bcrypt hash stored for a password.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), PasswordCost)
	return string(h), err
}

func (a *Auth) user(ctx context.Context, name string) (*events.User, error) {
	kv, err := a.store.Get(ctx, etcdx.Key("users", name))
	if err != nil {
		return nil, err
	}
	u := &events.User{}
	if err := json.Unmarshal(kv.Value, u); err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	return u, nil
}

// Login checks a username and password and issues a token pair.
func (a *Auth) Login(ctx context.Context, username, password string) (Tokens, error) {
	u, err := a.user(ctx, username)
	if errors.Is(err, etcdx.ErrNotFound) {
		// Spend the same time as a real check so names cannot be probed by timing.
		_ = bcrypt.CompareHashAndPassword([]byte("$2a$10$7EqJtq98hPqEX7fNZaFWoOa4lLQZ4h6mRvl0R3SKqGQsHfaU/6tNa"), []byte(password))
		return Tokens{}, errBadCredentials
	}
	if err != nil {
		return Tokens{}, err
	}
	if u.Disabled || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil {
		return Tokens{}, errBadCredentials
	}
	return a.issue(ctx, u.Username)
}

func (a *Auth) issue(ctx context.Context, username string) (Tokens, error) {
	now := time.Now()
	jti := randomToken(16)
	exp := now.Add(a.accessTTL)
	access, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   username,
		ID:        jti,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}).SignedString(a.secret)
	if err != nil {
		return Tokens{}, err
	}
	refresh := randomToken(32)
	rec, _ := json.Marshal(refreshRecord{Username: username, RefreshHash: sha(refresh), ExpiresAt: now.Add(a.refreshTTL).Unix()})
	// The record expires with the refresh token, through an etcd lease.
	cli := a.store.Client()
	lease, err := cli.Grant(ctx, int64(a.refreshTTL/time.Second)+1)
	if err != nil {
		return Tokens{}, fmt.Errorf("grant token lease: %w", err)
	}
	if _, err := cli.Put(ctx, tokenKey(jti), string(rec), clientv3.WithLease(lease.ID)); err != nil {
		return Tokens{}, fmt.Errorf("store refresh token: %w", err)
	}
	return Tokens{AccessToken: access, ExpiresAt: exp.Unix(), RefreshToken: refresh}, nil
}

func tokenKey(jti string) string { return etcdx.Key("auth", "tokens", jti) }

// parse verifies an access token's signature; expiry is checked only when checkExpiry.
func (a *Auth) parse(token string, checkExpiry bool) (*jwt.RegisteredClaims, error) {
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"})}
	if !checkExpiry {
		opts = append(opts, jwt.WithoutClaimsValidation())
	}
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return a.secret, nil }, opts...)
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// Refresh trades a (possibly expired) access token and its refresh token for a new
// pair. Each refresh token works once.
func (a *Auth) Refresh(ctx context.Context, accessToken, refreshToken string) (Tokens, error) {
	claims, err := a.parse(accessToken, false)
	if err != nil {
		return Tokens{}, fmt.Errorf("access token: %w", errUnauthorized)
	}
	kv, err := a.store.Get(ctx, tokenKey(claims.ID))
	if errors.Is(err, etcdx.ErrNotFound) {
		return Tokens{}, fmt.Errorf("refresh token expired or logged out; log in again: %w", errUnauthorized)
	}
	if err != nil {
		return Tokens{}, err
	}
	var rec refreshRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return Tokens{}, err
	}
	if subtle.ConstantTimeCompare([]byte(rec.RefreshHash), []byte(sha(refreshToken))) != 1 || rec.Username != claims.Subject {
		return Tokens{}, fmt.Errorf("refresh token does not match the access token: %w", errUnauthorized)
	}
	if time.Now().Unix() > rec.ExpiresAt {
		return Tokens{}, fmt.Errorf("refresh token expired; log in again: %w", errUnauthorized)
	}
	// Delete exactly the record we read, so two concurrent refreshes cannot both win.
	if err := a.store.DeleteRev(ctx, tokenKey(claims.ID), kv.ModRevision); err != nil {
		return Tokens{}, fmt.Errorf("refresh token already used: %w", errUnauthorized)
	}
	u, err := a.user(ctx, rec.Username)
	if err != nil || u.Disabled {
		return Tokens{}, fmt.Errorf("user %s no longer exists or is disabled: %w", rec.Username, errUnauthorized)
	}
	return a.issue(ctx, rec.Username)
}

// Logout revokes an access token and its refresh token. An expired access token may
// still log out, so a client can always revoke its refresh token.
func (a *Auth) Logout(ctx context.Context, accessToken string) error {
	claims, err := a.parse(accessToken, false)
	if err != nil {
		return fmt.Errorf("invalid access token: %w", errUnauthorized)
	}
	err = a.store.Delete(ctx, tokenKey(claims.ID))
	if errors.Is(err, etcdx.ErrNotFound) {
		return nil
	}
	return err
}

// Authenticate identifies the caller from a Bearer token or an API key.
func (a *Auth) Authenticate(ctx context.Context, r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	var username, jti string
	switch strings.ToLower(scheme) {
	case "bearer":
		claims, err := a.parse(cred, true)
		if err != nil {
			if errors.Is(err, jwt.ErrTokenExpired) {
				return nil, fmt.Errorf("access token expired; refresh it with POST /auth/token: %w", errUnauthorized)
			}
			return nil, fmt.Errorf("invalid access token: %w", errUnauthorized)
		}
		if _, err := a.store.Get(ctx, tokenKey(claims.ID)); err != nil {
			if errors.Is(err, etcdx.ErrNotFound) {
				return nil, fmt.Errorf("access token was logged out: %w", errUnauthorized)
			}
			return nil, err
		}
		username, jti = claims.Subject, claims.ID
	case "key":
		kv, err := a.store.Get(ctx, etcdx.Key("apikeys", cred))
		if err != nil {
			if errors.Is(err, etcdx.ErrNotFound) {
				return nil, fmt.Errorf("unknown API key: %w", errUnauthorized)
			}
			return nil, err
		}
		var k events.APIKey
		if err := json.Unmarshal(kv.Value, &k); err != nil {
			return nil, err
		}
		username = k.Username
	case "":
		return nil, fmt.Errorf("no credentials: log in with GET /auth or send Authorization: Bearer <token>: %w", errUnauthorized)
	default:
		return nil, fmt.Errorf("authorization scheme %q is not supported; use Bearer or Key: %w", scheme, errUnauthorized)
	}
	u, err := a.user(ctx, username)
	if errors.Is(err, etcdx.ErrNotFound) {
		return nil, fmt.Errorf("user %s no longer exists: %w", username, errUnauthorized)
	}
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, fmt.Errorf("user %s is disabled: %w", username, errUnauthorized)
	}
	return &Principal{Username: u.Username, Groups: u.Groups, Role: RoleOf(u.Groups), TokenID: jti}, nil
}

func randomToken(n int) string {
	return base64.RawURLEncoding.EncodeToString(mustRandom(n))
}

func mustRandom(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// verb is what a request does to a resource, for authorization.
type verb int

const (
	verbRead verb = iota
	verbWrite
)

// allowed decides whether a role may perform verb on a kind (by its plural).
// Cluster-wide kinds other than namespaces are the cluster admin's alone.
func allowed(role Role, v verb, plural string) bool {
	switch role {
	case RoleClusterAdmin:
		return true
	case RoleEditor:
		switch plural {
		case "users", "apikeys", "cluster":
			return false
		case "namespaces":
			return v == verbRead
		}
		return true
	case RoleViewer:
		switch plural {
		case "users", "apikeys":
			return false
		}
		return v == verbRead
	case RoleAgent:
		// Agents speak the WebSocket protocol; through the API they may touch only
		// entities and events, never read definitions that may carry secrets.
		return plural == "entities" || plural == "events"
	}
	return false
}

package events

import "encoding/json"

// Namespace groups namespaced resources. Its JSON form is flat, {"name": "..."}, with no
// metadata object; Meta still works and reflects Name. Rename through Name or through
// Meta().Name, not both between two calls of Meta (the metadata would win).
type Namespace struct {
	Name string `json:"name"`

	meta   ObjectMeta
	synced string
	extra  map[string]json.RawMessage
}

// sync reconciles Name with the metadata handed out by Meta: whichever changed since the
// last sync wins, the metadata if both did.
func (n *Namespace) sync() { syncName(&n.Name, &n.meta, &n.synced) }

// syncName keeps a flat resource's name field and its metadata name equal.
func syncName(name *string, meta *ObjectMeta, synced *string) {
	if meta.Name != *synced {
		*name = meta.Name
	}
	meta.Name = *name
	*synced = *name
}

// Meta returns metadata whose Name is the namespace's name; setting it renames the
// namespace.
func (n *Namespace) Meta() *ObjectMeta {
	n.sync()
	return &n.meta
}

// MarshalJSON writes {"name": ...} plus any unknown fields read earlier.
func (n Namespace) MarshalJSON() ([]byte, error) {
	n.sync()
	return marshalKeeping(&n, n.extra)
}

// UnmarshalJSON reads a namespace and keeps keys it does not know.
func (n *Namespace) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, n)
	n.extra = extra
	n.meta.Name, n.synced = n.Name, n.Name
	return err
}

// Validate reports every problem with the namespace.
func (n *Namespace) Validate() error {
	n.sync()
	var p problems
	p.name("name", n.Name, nameRE)
	return p.err()
}

// User is an account that sensuctl, the API and agents authenticate as. Password is input
// only: the store keeps PasswordHash, and Password is written out only when set.
type User struct {
	Username     string   `json:"username"`
	Password     string   `json:"password,omitempty"`
	PasswordHash string   `json:"password_hash,omitempty"`
	Groups       []string `json:"groups"`
	Disabled     bool     `json:"disabled"`

	meta   ObjectMeta
	synced string
	extra  map[string]json.RawMessage
}

func (u *User) sync() { syncName(&u.Username, &u.meta, &u.synced) }

// Meta returns metadata whose Name is the username; setting it renames the user.
func (u *User) Meta() *ObjectMeta {
	u.sync()
	return &u.meta
}

// MarshalJSON writes the user plus any unknown fields read earlier.
func (u User) MarshalJSON() ([]byte, error) {
	u.sync()
	return marshalKeeping(&u, u.extra)
}

// UnmarshalJSON reads a user and keeps keys it does not know.
func (u *User) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, u)
	u.extra = extra
	u.meta.Name, u.synced = u.Username, u.Username
	return err
}

// MinPasswordLength is the shortest password Picket accepts.
const MinPasswordLength = 8

// Validate reports every problem with the user.
func (u *User) Validate() error {
	u.sync()
	var p problems
	p.name("username", u.Username, nameRE)
	switch {
	case u.Password != "" && len(u.Password) < MinPasswordLength:
		p.add("password", "must be at least %d characters (got %d)", MinPasswordLength, len(u.Password))
	case u.Password == "" && u.PasswordHash == "":
		p.add("password", "required; set password (%d characters or more) or password_hash", MinPasswordLength)
	}
	if len(u.Groups) == 0 {
		p.add("groups", "at least one group is required, e.g. cluster-admins or system:agents")
	}
	p.nonEmptyItems("groups", u.Groups)
	return p.err()
}

// APIKey lets a user authenticate with a key instead of a password. Its name is the key.
type APIKey struct {
	Metadata  ObjectMeta `json:"metadata"`
	Username  string     `json:"username"`
	CreatedAt int64      `json:"created_at"`

	extra map[string]json.RawMessage
}

// Meta returns the key's metadata.
func (k *APIKey) Meta() *ObjectMeta { return &k.Metadata }

// MarshalJSON writes every field, including unknown ones read earlier.
func (k APIKey) MarshalJSON() ([]byte, error) { return marshalKeeping(&k, k.extra) }

// UnmarshalJSON reads an API key and keeps keys it does not know.
func (k *APIKey) UnmarshalJSON(b []byte) error {
	extra, err := unmarshalKeeping(b, k)
	k.extra = extra
	return err
}

// Validate reports every problem with the API key.
func (k *APIKey) Validate() error {
	var p problems
	p.name("metadata.name", k.Metadata.Name, nameRE)
	if k.Username == "" {
		p.add("username", "required; set the user the key authenticates as")
	}
	if k.CreatedAt < 0 {
		p.add("created_at", "must be a unix time in seconds (got %d)", k.CreatedAt)
	}
	return p.err()
}

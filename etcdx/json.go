package etcdx

import (
	"context"
	"encoding/json"
	"fmt"
)

// GetJSON reads key and decodes its JSON value into a T. It returns the value's mod
// revision for a later UpdateJSON.
func GetJSON[T any](ctx context.Context, s *Store, key string) (T, int64, error) {
	var v T
	kv, err := s.Get(ctx, key)
	if err != nil {
		return v, 0, err
	}
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return v, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, kv.ModRevision, nil
}

// CreateJSON stores v as JSON at key if the key does not exist (see Store.Create).
func CreateJSON[T any](ctx context.Context, s *Store, key string, v T) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	return s.Create(ctx, key, b)
}

// UpdateJSON replaces key with v as JSON if its mod revision is still modRev (see
// Store.Update).
func UpdateJSON[T any](ctx context.Context, s *Store, key string, v T, modRev int64) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	return s.Update(ctx, key, b, modRev)
}

// PutJSON stores v as JSON at key unconditionally (see Store.Put).
func PutJSON[T any](ctx context.Context, s *Store, key string, v T) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	return s.Put(ctx, key, b)
}

// ListJSON lists like Store.List and decodes each value into a T.
func ListJSON[T any](ctx context.Context, s *Store, prefix string, limit int64, cont string) ([]T, string, error) {
	kvs, next, err := s.List(ctx, prefix, limit, cont)
	if err != nil {
		return nil, "", err
	}
	out := make([]T, len(kvs))
	for i, kv := range kvs {
		if err := json.Unmarshal(kv.Value, &out[i]); err != nil {
			return nil, "", fmt.Errorf("decode %s: %w", kv.Key, err)
		}
	}
	return out, next, nil
}

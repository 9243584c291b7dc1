package etcdx_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/picketmon/picket/etcdx"
)

func TestCompress(t *testing.T) {
	event := []byte(`{"entity":{"metadata":{"name":"web1","namespace":"default"}},"check":{"history":[` +
		strings.Repeat(`{"status":2,"executed":1796538262},`, 20) + `{"status":0,"executed":1796538272}]}}`)
	c := etcdx.Compress(event)
	if c[0] != 0xff || len(c) >= len(event)/2 {
		t.Fatalf("Compress: %d bytes from %d, first byte %#x", len(c), len(event), c[0])
	}
	if got := etcdx.Decompress(c); !bytes.Equal(got, event) {
		t.Fatalf("Decompress(Compress(v)) = %q", got)
	}
	// Plain values (everything stored before compression, and all but events) pass as they are.
	for _, v := range [][]byte{nil, {}, []byte(`{"name":"cpu"}`), []byte(" [1]"), []byte("0")} {
		if got := etcdx.Decompress(v); !bytes.Equal(got, v) {
			t.Errorf("Decompress(%q) = %q", v, got)
		}
	}
	// A compressed value that does not decode comes back as stored, for its JSON reader
	// to refuse with the key's name.
	bad := append([]byte{}, c[:len(c)/2]...)
	if got := etcdx.Decompress(bad); !bytes.Equal(got, bad) {
		t.Errorf("Decompress(truncated) = %q, want it as stored", got)
	}
	if got := etcdx.Decompress(etcdx.Compress(nil)); len(got) != 0 {
		t.Errorf("Decompress(Compress(nil)) = %q", got)
	}
}

// TestCompressedValuesReadPlain: a value stored compressed reads back plain through
// every path that returns values: Get, List, ListAll, Watch, the JSON helpers and a
// grouped write whose condition failed; etcd itself holds the compressed bytes.
func TestCompressedValuesReadPlain(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s := sharedStore
	clearTestKeys(t)
	dir := testKey(t, "events")
	plain := []byte(`{"name":"cpu","interval":10,"history":"` + strings.Repeat("2", 200) + `"}`)
	ch := s.Watch(ctx, dir, 0)
	rev, err := s.Put(ctx, dir+"/a", etcdx.Compress(plain))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Client().Get(ctx, dir+"/a")
	if err != nil || len(raw.Kvs) != 1 || raw.Kvs[0].Value[0] != 0xff || len(raw.Kvs[0].Value) >= len(plain) {
		t.Fatalf("etcd holds %v, %v; want the compressed value", raw, err)
	}
	if kv, err := s.Get(ctx, dir+"/a"); err != nil || !bytes.Equal(kv.Value, plain) || kv.ModRevision != rev {
		t.Fatalf("Get = %q at %d, %v", kv.Value, kv.ModRevision, err)
	}
	if ev := next(t, ch); !bytes.Equal(ev.KV.Value, plain) {
		t.Fatalf("Watch = %q", ev.KV.Value)
	}
	list, _, err := s.List(ctx, dir, 0, "")
	if err != nil || len(list) != 1 || !bytes.Equal(list[0].Value, plain) {
		t.Fatalf("List = %+v, %v", list, err)
	}
	all, _, err := s.ListAll(ctx, dir)
	if err != nil || len(all) != 1 || !bytes.Equal(all[0].Value, plain) {
		t.Fatalf("ListAll = %+v, %v", all, err)
	}
	got, _, err := etcdx.GetJSON[check](ctx, s, dir+"/a")
	if err != nil || got != (check{"cpu", 10}) {
		t.Fatalf("GetJSON = %+v, %v", got, err)
	}
	b := etcdx.NewBatcher(etcdx.ClientTxn(s.Client()), 1, 100, time.Millisecond)
	defer b.Close()
	res, err := b.Put(ctx, etcdx.CondPut{Key: dir + "/a", Value: etcdx.Compress([]byte(`{}`)), ModRev: rev - 1})
	if err != nil || res.Written || !bytes.Equal(res.Current.Value, plain) || res.Current.ModRevision != rev {
		t.Fatalf("failed grouped write: %+v, %v; want the current value plain", res, err)
	}
}

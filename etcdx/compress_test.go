package etcdx_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/picketmon/picket/etcdx"
)

func TestCompress(t *testing.T) {
	event := []byte(`{"entity":{"metadata":{"name":"web1","namespace":"default"}},"check":{"history":[` +
		strings.Repeat(`{"status":2,"executed":1796538262},`, 20) + `{"status":0,"executed":1796538272}]}}`)
	c := etcdx.Compress(event)
	if c[0] != 0xfe || len(c) >= len(event)/2 {
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
	// Events stored before the dictionary, the mark 0xff and a plain S2 block, still read.
	old := append([]byte{0xff}, s2.Encode(nil, event)...)
	if got := etcdx.Decompress(old); !bytes.Equal(got, event) || !etcdx.Compressed(old) {
		t.Errorf("Decompress(an S2 block without the dictionary) = %q", got)
	}
	// A corrupt length (4 GiB here) is refused before anything is allocated for it.
	huge := []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if got := etcdx.Decompress(huge); !bytes.Equal(got, huge) {
		t.Errorf("Decompress(a value claiming 4 GiB) = %d bytes, want it as stored", len(got))
	}
	if bad := append([]byte{0xff}, c[1:]...); bytes.Equal(etcdx.Decompress(bad), event) {
		t.Errorf("a block made with the dictionary decoded without it")
	}
}

// TestCompressWithTheEventDictionary: an agent's keepalive, 1,322 bytes of compact JSON,
// takes 930 bytes with S2 alone; against the event dictionary it must take at most 400,
// and decode back exactly. Events that look like nothing in the dictionary round-trip too.
func TestCompressWithTheEventDictionary(t *testing.T) {
	keepalive := []byte(`{"metadata":{"namespace":"default"},"timestamp":1796626160,"entity":{"metadata":{"name":"web-7","namespace":"default","labels":{"sensu.io/managed_by":"sensu-agent"}},"entity_class":"agent","system":{"hostname":"web-7","os":"linux","platform":"debian","platform_family":"debian","platform_version":"12","network":{"interfaces":[{"name":"lo","addresses":["127.0.0.1/8","::1/128"]},{"name":"ifb0","mac":"f2:84:ca:ac:a4:ff","addresses":[]},{"name":"ifb1","mac":"aa:bf:e0:9c:dd:f4","addresses":[]},{"name":"eth0","mac":"02:fc:00:00:00:01","addresses":["192.0.2.2/24","fd00::2/64","fe80::fc:ff:fe00:1/64"]}]},"arch":"amd64","libc_type":"glibc","vm_system":"docker","vm_role":"guest","cloud_provider":null,"processes":null},"subscriptions":["dev","entity:web-7"],"last_seen":1796626160,"deregistration":{},"user":"agent","redact":["password","passwd","pass","api_key","api_token","access_key","secret_key","private_key","secret"],"sensu_agent_version":"dev"},"check":{"metadata":{"name":"keepalive","namespace":"default"},"handlers":["keepalive"],"interval":20,"subscriptions":[],"timeout":120,"executed":1796626160,"history":[{"executed":1796626160}],"issued":1796626160,"output":"Keepalive last sent from web-7 at 2026-12-07T06:49:20Z","state":"passing","last_ok":1796626160,"occurrences":1,"occurrences_watermark":1}}`)
	c := etcdx.Compress(keepalive)
	if plain := s2.Encode(nil, keepalive); len(c) > 400 || len(c) >= len(plain)/2 {
		t.Errorf("keepalive: %d bytes with the dictionary, %d with S2 alone, from %d", len(c), len(plain), len(keepalive))
	}
	if got := etcdx.Decompress(c); !bytes.Equal(got, keepalive) {
		t.Fatalf("Decompress(Compress(keepalive)) = %q", got)
	}
	for _, v := range []string{"x", strings.Repeat("ab", 40000), "\xff\x00 binary \x01", `{"output":"` + strings.Repeat("é€", 3000) + `"}`} {
		if got := etcdx.Decompress(etcdx.Compress([]byte(v))); string(got) != v {
			t.Errorf("round trip of %d bytes: %d bytes back", len(v), len(got))
		}
	}
}

// TestEventDictionaryIsFixed: every event stored with the mark 0xfe needs exactly these
// bytes to be read back. A changed dictionary must be a new file under a new mark. A
// value stored on 2026-12-07 still decodes to the event it was made from, whatever the
// dictionary's setup or the S2 library's encoder become.
func TestEventDictionaryIsFixed(t *testing.T) {
	stored, _ := hex.DecodeString("fec60415000a4a7d013297041c393636323631363051a35acb01107765622d3766d001093c4675043aaf013e0f030956005d51cf15005d7ab4020c6469736b66e80059b814636865636b2d0d2e59b400363a8402395f2e8c025a6102092d0430303e590209180836307d22780824223a224449534b204f4b525c025d45113c323d02414d15001008317d7d")
	want := `{"metadata":{"namespace":"default"},"timestamp":1796626160,"entity":{"metadata":{"name":"web-7","namespace":"default"},"entity_class":"agent","subscriptions":["linux","entity:web-7"],"redact":["password","passwd","pass","api_key","api_token","access_key","secret_key","private_key","secret"]},"check":{"metadata":{"name":"disk","namespace":"default"},"command":"check-disk","interval":60,"executed":1796626160,"history":[{"status":2,"executed":1796626100},{"executed":1796626160}],"output":"DISK OK","state":"passing","last_ok":1796626160,"occurrences":1,"occurrences_watermark":1}}`
	if got := etcdx.Decompress(stored); string(got) != want {
		t.Fatalf("a value stored with the dictionary reads as %q", got)
	}
	b, err := os.ReadFile("eventdict-1.txt")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != eventDict1SHA256 {
		t.Fatalf("eventdict-1.txt changed (sha256 %s, was %s): events stored with it would no longer read; restore it, and put a new dictionary in a new file under a new mark", got, eventDict1SHA256)
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
	if err != nil || len(raw.Kvs) != 1 || raw.Kvs[0].Value[0] != 0xfe || len(raw.Kvs[0].Value) >= len(plain) {
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

const eventDict1SHA256 = "52d95737846146f401e9d8c0accee1dadb5bb9cc5cd9ed7425e4c43db332a172"

// FuzzCompress: every value comes back exactly through Compress and Decompress, and
// Decompress of any bytes (a corrupt or foreign value) returns without panicking.
func FuzzCompress(f *testing.F) {
	f.Add([]byte(`{"metadata":{"namespace":"default"},"timestamp":1796626160}`))
	f.Add([]byte{0xfe, 0x10, 0x00})
	f.Add([]byte{0xff, 0x01})
	f.Add([]byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0x0f})             // claims 4 GiB
	f.Add([]byte{0xfe, 0x20, 0x3d, 0x00, 0x7b, 0x22, 0xff, 0xff}) // a copy from nowhere
	f.Fuzz(func(t *testing.T, v []byte) {
		if got := etcdx.Decompress(etcdx.Compress(v)); !bytes.Equal(got, v) {
			t.Fatalf("round trip of %q: %q", v, got)
		}
		if got := etcdx.Decompress(v); etcdx.Compressed(v) && len(got) > 64<<20 {
			t.Fatalf("Decompress(%x) gave %d bytes", v, len(got))
		}
	})
}

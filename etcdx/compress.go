package etcdx

import (
	_ "embed"
	"sync"

	"github.com/klauspost/compress/s2"
)

// The marks that start a value stored compressed. JSON never starts with either (neither
// is even UTF-8), so a reader tells a compressed value from a plain one by its first
// byte, and values stored plain before compression existed read as before.
const (
	// compressedMark: an S2 block, as events were stored from 2026-12-06 to the event
	// dictionary's introduction. Still read; no longer written.
	compressedMark = 0xff
	// dictMark: an S2 block against eventDict, as events are stored since.
	dictMark = 0xfe
)

// eventDict is the dictionary events are compressed against: a stored event in the form
// a Picket or Sensu agent sends it, with the field names, their order and the usual
// values (the default redact list, a Linux host's system, a check's result and history)
// but no names or times of its own. An event is mostly these: with the dictionary S2
// leaves 25–50 % of the compact JSON, a third to a half of what S2 alone leaves (an
// agent's keepalive, 1,322 bytes: 930 bytes with S2 alone, 323 with the dictionary).
//
// Every value stored with dictMark needs exactly these bytes to be read: the file never
// changes (TestEventDictionaryIsFixed pins its hash). A better dictionary is a new file
// under a new mark, with this one kept for reading.
//
//go:embed eventdict-1.txt
var eventDictBytes []byte

var eventDict = func() *s2.Dict {
	d := s2.MakeDict(eventDictBytes, nil)
	if d == nil { // only if the file were emptied or grew past 64 KB
		panic("etcdx: eventdict-1.txt is not a valid S2 dictionary")
	}
	return d
}()

// Compress returns v as stored compressed: the mark, then v as an S2 block against
// eventDict. Events use it: a stored event, 1.3–2 KB of compact JSON, takes a quarter to
// a half of the bytes, and an embedded etcd member spends its time per event mostly in
// proportion to the bytes it copies, logs, writes and later compacts away. Every value
// read through this package (Store, Batcher, Watch) comes back decompressed.
//
// S2 needs room for its worst case, more than v: it encodes into a buffer reused from
// value to value, and only the result is allocated, at its size.
func Compress(v []byte) []byte {
	need := s2.MaxEncodedLen(len(v)) // etcd refuses values of over 1.5 MiB anyway
	sp := scratch.Get().(*[]byte)
	if cap(*sp) < need {
		*sp = make([]byte, need)
	}
	enc := eventDict.Encode((*sp)[:need], v)
	out := make([]byte, 1+len(enc))
	out[0] = dictMark
	copy(out[1:], enc)
	if cap(*sp) <= maxScratch {
		scratch.Put(sp)
	}
	return out
}

// scratch holds Compress's buffers; one larger than maxScratch is not kept.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

const maxScratch = 256 << 10

// maxDecoded bounds the plain size a stored value may claim. A value stored by Compress
// is at most etcd's request limit (a few MiB), and event JSON compresses at most tens of
// times; a corrupt length prefix must not make a reader allocate gigabytes.
const maxDecoded = 64 << 20

// Decompress returns the plain form of a stored value: v itself unless it was stored
// by Compress. A compressed value that does not decode (or claims more than maxDecoded
// bytes) is returned as stored, so that its reader's JSON decoding fails and names the
// key, rather than this layer.
func Decompress(v []byte) []byte {
	if !Compressed(v) {
		return v
	}
	if n, err := s2.DecodedLen(v[1:]); err != nil || n > maxDecoded {
		return v
	}
	var out []byte
	var err error
	if v[0] == dictMark {
		out, err = eventDict.Decode(nil, v[1:])
	} else {
		out, err = s2.Decode(nil, v[1:])
	}
	if err != nil {
		return v
	}
	return out
}

// Compressed reports whether v is a value as Compress stores it, or stored it before the
// event dictionary: after Decompress, one that did not decode.
func Compressed(v []byte) bool { return len(v) > 0 && (v[0] == compressedMark || v[0] == dictMark) }

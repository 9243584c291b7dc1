package etcdx

import (
	"sync"

	"github.com/klauspost/compress/s2"
)

// compressedMark starts a value stored compressed. JSON never starts with it (it is not
// even UTF-8), so a reader tells a compressed value from a plain one by its first byte,
// and values stored plain before compression existed read as before.
const compressedMark = 0xff

// Compress returns v as stored compressed: the mark, then v as an S2 block. Events use
// it: a stored event, 1.6 KB of JSON with a 21-entry history, takes about half the
// bytes, and an embedded etcd member spends its time per event mostly in proportion to
// the bytes it copies, logs, writes and later compacts away. Every value read through
// this package (Store, Batcher, Watch) comes back decompressed.
//
// S2 needs room for its worst case, more than v: it encodes into a buffer reused from
// value to value, and only the result is allocated, at its size.
func Compress(v []byte) []byte {
	need := s2.MaxEncodedLen(len(v)) // etcd refuses values of over 1.5 MiB anyway
	sp := scratch.Get().(*[]byte)
	if cap(*sp) < need {
		*sp = make([]byte, need)
	}
	enc := s2.Encode((*sp)[:need], v)
	out := make([]byte, 1+len(enc))
	out[0] = compressedMark
	copy(out[1:], enc)
	if cap(*sp) <= maxScratch {
		scratch.Put(sp)
	}
	return out
}

// scratch holds Compress's buffers; one larger than maxScratch is not kept.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

const maxScratch = 256 << 10

// Decompress returns the plain form of a stored value: v itself unless it was stored
// by Compress. A compressed value that does not decode is returned as stored, so that
// its reader's JSON decoding fails and names the key, rather than this layer.
func Decompress(v []byte) []byte {
	if !Compressed(v) {
		return v
	}
	out, err := s2.Decode(nil, v[1:])
	if err != nil {
		return v
	}
	return out
}

// Compressed reports whether v is a value as Compress stores it: after Decompress, one
// that did not decode.
func Compressed(v []byte) bool { return len(v) > 0 && v[0] == compressedMark }

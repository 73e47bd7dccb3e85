package launch

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

func TestAppendBase64(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{7}))
	for _, tc := range []struct {
		name   string
		prefix string
		n      int
	}{
		{name: "empty", n: 0},
		{name: "one", n: 1},
		{name: "two", n: 2},
		{name: "group", n: 3},
		{name: "one step short", n: 7},
		{name: "one step", n: 8},
		{name: "step and tail", n: 13},
		{name: "many steps", n: 4096 + 5},
		{name: "after a prefix", prefix: `{"d":"`, n: 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := make([]byte, tc.n)
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			want := base64.StdEncoding.AppendEncode([]byte(tc.prefix), src)
			if got := appendBase64([]byte(tc.prefix), src); !bytes.Equal(got, want) {
				t.Errorf("appendBase64(%d bytes) = %q; want %q", tc.n, got, want)
			}
		})
	}
}

func FuzzAppendBase64(f *testing.F) {
	for _, s := range []string{"", "\x00", "\xff\xfe\xfd", "abcdefgh", "\x00\x10\x83\x10\x51\x87\x20\x92\x8b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		want := base64.StdEncoding.AppendEncode(nil, src)
		if got := appendBase64(nil, src); !bytes.Equal(got, want) {
			t.Errorf("appendBase64(%x) = %q; want %q", src, got, want)
		}
	})
}

func BenchmarkAppendBase64(b *testing.B) {
	src := make([]byte, 256<<10)
	for i := range src {
		src[i] = byte(i*131 + i>>7)
	}
	dst := make([]byte, 0, base64.StdEncoding.EncodedLen(len(src)))
	for _, tc := range []struct {
		name string
		fn   func([]byte, []byte) []byte
	}{{"stdlib", base64.StdEncoding.AppendEncode}, {"pairs", appendBase64}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				tc.fn(dst[:0], src)
			}
		})
	}
}

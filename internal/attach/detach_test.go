package attach

import (
	"bytes"
	"testing"
)

func TestDetector(t *testing.T) {
	pq := []byte{0x10, 0x11} // ctrl-p,ctrl-q
	tests := []struct {
		name     string
		keys     []byte
		chunks   []string // successive reads
		want     string   // forwarded, including what is pending at the end
		detached bool
	}{
		{name: "no keys pass everything", keys: nil, chunks: []string{"ls\x1d\r"}, want: "ls\x1d\r"},
		{name: "plain input", keys: []byte{0x1d}, chunks: []string{"echo hi\r"}, want: "echo hi\r"},
		{name: "detach mid-stream", keys: []byte{0x1d}, chunks: []string{"ab\x1dcd"}, want: "ab", detached: true},
		{name: "two-key detach across reads", keys: pq, chunks: []string{"x\x10", "\x11y"}, want: "x", detached: true},
		{name: "partial prefix forwarded", keys: pq, chunks: []string{"\x10a"}, want: "\x10a"},
		{name: "prefix then other key across reads", keys: pq, chunks: []string{"\x10", "z"}, want: "\x10z"},
		{name: "doubled first key still detaches", keys: pq, chunks: []string{"\x10\x10\x11"}, want: "\x10", detached: true},
		{name: "overlap a,a,b typed a a a b", keys: []byte("aab"), chunks: []string{"aaab"}, want: "a", detached: true},
		{name: "prefix pending at EOF forwarded", keys: pq, chunks: []string{"k\x10"}, want: "k\x10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := detector{keys: tc.keys}
			var got []byte
			detached := false
			for _, c := range tc.chunks {
				out, det := d.feed([]byte(c))
				got = append(got, out...)
				if det {
					detached = true
					break
				}
			}
			if !detached {
				got = append(got, d.pending()...)
			}
			if string(got) != tc.want || detached != tc.detached {
				t.Errorf("forwarded %q, detached %v; want %q, %v", got, detached, tc.want, tc.detached)
			}
		})
	}
}

// FuzzDetector checks that the detector only ever withholds the detach
// sequence: without a detach, everything typed is forwarded in order, and
// with one, what is forwarded is exactly the input before the first
// occurrence of the keys.
func FuzzDetector(f *testing.F) {
	f.Add([]byte{0x10, 0x11}, []byte("ab\x10\x10\x11cd"), uint8(3))
	f.Add([]byte("aab"), []byte("aaaab"), uint8(1))
	f.Add([]byte{0x1d}, []byte("plain"), uint8(2))
	f.Fuzz(func(t *testing.T, keys, input []byte, split uint8) {
		if len(keys) == 0 || len(keys) > maxDetachKeys {
			return
		}
		d := detector{keys: keys}
		step := int(split)%7 + 1
		var got []byte
		for i := 0; i < len(input); i += step {
			out, det := d.feed(input[i:min(i+step, len(input))])
			got = append(got, out...)
			if det {
				// The sequence's first occurrence ends the input
				// forwarded, which is everything before it.
				if bytes.Index(input, keys) != len(got) || !bytes.HasPrefix(input, got) {
					t.Fatalf("detached on %q with keys %q; forwarded %q", input, keys, got)
				}
				return
			}
		}
		if bytes.Contains(input, keys) {
			t.Fatalf("no detach on %q with keys %q", input, keys)
		}
		got = append(got, d.pending()...)
		if !bytes.Equal(got, input) {
			t.Fatalf("forwarded %q; want all of %q", got, input)
		}
	})
}

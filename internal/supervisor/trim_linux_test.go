package supervisor

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTextRanges(t *testing.T) {
	const maps = `00400000-00d52000 r-xp 00000000 fe:00 9997579                            /opt/msb/bin/msb
00d52000-0171d000 r--p 00952000 fe:00 9997579                            /opt/msb/bin/msb
0171d000-017ae000 rw-p 0131d000 fe:00 9997579                            /opt/msb/bin/msb
017ae000-03a24000 rw-p 00000000 00:00 0
7f50b380f000-7f50b386f000 r--p 00000000 fe:00 12                         /opt/msb/bin/msb (deleted)
7f50b3900000-7f50b3a00000 r--s 00000000 fe:00 9997579                    /opt/msb/bin/msb
7f50b3a00000-7f50b3b00000 r-xp 00000000 fe:00 77                         /usr/lib/other.so
garbage
`
	tests := []struct {
		name, exe string
		want      [][2]uintptr
	}{
		// The writable data segment, shared mappings and other files are
		// never picked: dropping them could lose data or is not ours.
		{"msb", "/opt/msb/bin/msb", [][2]uintptr{{0x400000, 0xd52000}, {0xd52000, 0x171d000}}},
		{"other", "/nowhere", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseTextRanges([]byte(maps), tc.exe)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseTextRanges(%s) (-want +got):\n%s", tc.exe, diff)
			}
		})
	}
}

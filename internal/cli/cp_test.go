package cli

import (
	"strings"
	"testing"
)

func TestParseCpArgs(t *testing.T) {
	tests := []struct {
		src, dst         string
		wantSrc, wantDst cpEnd
		wantErr          string
	}{
		{src: "box:/etc/hosts", dst: ".", wantSrc: cpEnd{"box", "/etc/hosts"}, wantDst: cpEnd{"", "."}},
		{src: "./src", dst: "dev:/work/", wantSrc: cpEnd{"", "./src"}, wantDst: cpEnd{"dev", "/work/"}},
		{src: "src", dst: "dev:work", wantSrc: cpEnd{"", "src"}, wantDst: cpEnd{"dev", "/work"}},
		{src: "dev:", dst: "out", wantSrc: cpEnd{"dev", "/"}, wantDst: cpEnd{"", "out"}},
		{src: "dev:/a/../b//c", dst: "/tmp/x:y", wantSrc: cpEnd{"dev", "/b/c"}, wantDst: cpEnd{"", "/tmp/x:y"}},
		{src: "./a:b", dst: "dev:/x", wantSrc: cpEnd{"", "./a:b"}, wantDst: cpEnd{"dev", "/x"}},
		{src: "dir/a:b", dst: "dev:/x", wantSrc: cpEnd{"", "dir/a:b"}, wantDst: cpEnd{"dev", "/x"}},
		{src: "a:/x", dst: "b:/y", wantErr: "both"},
		{src: "a", dst: "b", wantErr: "neither"},
		{src: "dev:/x", dst: "-", wantErr: "not supported"},
	}
	for _, tc := range tests {
		src, dst, err := parseCpArgs(tc.src, tc.dst)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseCpArgs(%q, %q) error = %v; want %q", tc.src, tc.dst, err, tc.wantErr)
			}
			continue
		}
		if err != nil || src != tc.wantSrc || dst != tc.wantDst {
			t.Errorf("parseCpArgs(%q, %q) = %+v, %+v, %v; want %+v, %+v", tc.src, tc.dst, src, dst, err, tc.wantSrc, tc.wantDst)
		}
	}
}

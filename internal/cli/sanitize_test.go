package cli

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNeutralize(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "hello\tworld\n", "hello\tworld\n"},
		{"utf8", "héllo ✓\n", "héllo ✓\n"},
		{"CSI color", "\x1b[31mred\x1b[0m", "red"},
		{"CSI cursor and clear", "a\x1b[2J\x1b[1;1Hb", "ab"},
		{"OSC title BEL", "\x1b]0;pwned\x07text", "text"},
		{"OSC 52 clipboard ST", "\x1b]52;c;ZXZpbA==\x1b\\text", "text"},
		{"DCS", "\x1bPq#0;2;0;0;0\x1b\\x", "x"},
		{"APC", "\x1b_secret\x1b\\y", "y"},
		{"two-byte ESC", "\x1bcreset\x1b(Bz", "resetz"},
		{"cut off OSC", "ok\x1b]0;unterminated", "ok"},
		{"lone ESC at end", "ok\x1b", "ok"},
		{"carriage return", "over\rwrite", "over\uFFFDwrite"},
		{"backspace and bell", "a\bb\x07", "a\uFFFDb\uFFFD"},
		{"DEL", "a\x7fb", "a\uFFFDb"},
		{"C1 CSI as UTF-8", "a\u009b31mb", "a\uFFFD31mb"},
		{"invalid UTF-8 (raw 8-bit CSI)", "a\x9b31mb", "a\uFFFD31mb"},
		{"C1 OSC as UTF-8", "a\u009d0;t\u0007b", "a\uFFFD0;t\uFFFDb"},
		{"C1 DCS and ST as UTF-8", "a\u0090q\u009cb", "a\uFFFDq\uFFFDb"},
		{"SOS", "\x1bXhidden\x1b\\v", "v"},
		{"PM", "\x1b^hidden\x07w", "w"},
		{"lone ESC mid-text", "a\x1b", "a"},
		{"ESC ESC CSI", "\x1b\x1b[31mx", "x"},
		{"lone ESC before newline", "a\x1b\nb", "a\nb"},
		{"lone ESC before UTF-8", "a\x1bé", "aé"},
		{"ESC with intermediates", "\x1b#8z", "z"},
		{"OSC 8 hyperlink", "\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "click"},
		{"OSC inside OSC", "\x1b]0;\x1b]0;x\x07y", "y"},
	}
	for _, tc := range tests {
		if got := neutralize(tc.in); got != tc.want {
			t.Errorf("%s: neutralize(%q) = %q; want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func FuzzNeutralize(f *testing.F) {
	for _, s := range []string{"\x1b]0;t\x07", "\x1b[1;2H", "a\x9bb", "\x1bP\x1b\\", "plain\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := neutralize(s)
		if strings.ContainsRune(out, 0x1b) {
			t.Fatalf("neutralize(%q) = %q still holds ESC", s, out)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
				t.Fatalf("neutralize(%q) = %q holds control %U", s, out, r)
			}
		}
		if !utf8.ValidString(out) {
			t.Fatalf("neutralize(%q) = %q is not valid UTF-8", s, out)
		}
		if neutralize(out) != out {
			t.Fatalf("neutralize is not idempotent on %q", s)
		}
	})
}

package cli

import (
	"strings"
	"unicode/utf8"
)

// neutralize makes guest-written text safe to print on the user's terminal:
// escape sequences (CSI, OSC, DCS, SOS, PM, APC and two-byte ESC forms) are
// removed whole, and every other control character — C0 except newline and
// tab, DEL, and the C1 range, which some terminals read as 8-bit CSI or OSC
// — is shown as U+FFFD. A hostile guest can otherwise retitle the window,
// rewrite the scrollback, set the clipboard (OSC 52) or hide text in
// `msb logs`. A sequence cut off at the end of s is removed to the end.
func neutralize(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0x1b {
			i = skipEscape(s, i)
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// isPlain reports whether s has nothing neutralize would change.
func isPlain(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// skipEscape returns the index just past the escape sequence at s[i] (an
// ESC).
func skipEscape(s string, i int) int {
	i++ // ESC
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '[': // CSI: parameters and intermediates, then a final byte 0x40–0x7e
		for i++; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
		}
		return i
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: until BEL or ST (ESC \)
		for i++; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return i
	default: // ESC plus intermediates (0x20–0x2f) and one final byte (0x30–0x7e)
		for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
			i++
		}
		// Anything else ends a lone ESC without being consumed: a second
		// ESC starts a sequence of its own (as terminals parse it) and a
		// newline stays a newline.
		if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
			i++
		}
		return i
	}
}

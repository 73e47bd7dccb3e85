package attach

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultDetachKeys is the detach sequence when none is given: Ctrl-],
// as the reference (and telnet) use; Docker's ctrl-p,ctrl-q would swallow
// Ctrl-P, which shells use for history.
const DefaultDetachKeys = "ctrl-]"

// maxDetachKeys bounds a detach sequence: the input loop holds back up to
// this many bytes while a prefix of it is being typed.
const maxDetachKeys = 16

// ParseDetachKeys parses a detach sequence in Docker's syntax: keys
// separated by commas, each either one printable ASCII character ("a",
// "q") or "ctrl-" followed by a letter or one of @ [ \ ] ^ _ ("ctrl-p",
// "ctrl-]"). "ctrl-" keys are case-insensitive. The empty string is
// rejected; callers that allow turning detaching off decide that before
// calling.
func ParseDetachKeys(spec string) ([]byte, error) {
	if spec == "" {
		return nil, errors.New("detach keys: empty (want e.g. ctrl-] or ctrl-p,ctrl-q)")
	}
	var keys []byte
	for _, k := range strings.Split(spec, ",") {
		b, err := parseKey(k)
		if err != nil {
			return nil, fmt.Errorf("detach keys %q: %w", spec, err)
		}
		keys = append(keys, b)
	}
	if len(keys) > maxDetachKeys {
		return nil, fmt.Errorf("detach keys %q: %d keys, at most %d", spec, len(keys), maxDetachKeys)
	}
	return keys, nil
}

// parseKey parses one key of a detach sequence.
func parseKey(k string) (byte, error) {
	if len(k) == 1 {
		if c := k[0]; c > ' ' && c < 0x7f {
			return c, nil
		}
		return 0, fmt.Errorf("key %q: not a printable character (write control keys as ctrl-X)", k)
	}
	rest, ok := cutPrefixFold(k, "ctrl-")
	if !ok || len(rest) != 1 {
		return 0, fmt.Errorf("key %q: want one character or ctrl-X (X a letter or one of @[\\]^_)", k)
	}
	c := rest[0]
	switch {
	case c >= 'a' && c <= 'z':
		return c - 'a' + 1, nil
	case c >= 'A' && c <= 'Z':
		return c - 'A' + 1, nil
	case c == '@':
		return 0, nil
	case c >= '[' && c <= '_': // [ \ ] ^ _
		return c - '[' + 0x1b, nil
	}
	return 0, fmt.Errorf("key %q: no ctrl-%c (X must be a letter or one of @[\\]^_)", k, c)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// FormatDetachKeys renders keys for a message ("Ctrl-]", "Ctrl-P Ctrl-Q").
func FormatDetachKeys(keys []byte) string {
	var parts []string
	for _, b := range keys {
		switch {
		case b == 0:
			parts = append(parts, "Ctrl-@")
		case b < 0x1b:
			parts = append(parts, "Ctrl-"+string(rune('A'+b-1)))
		case b < ' ':
			parts = append(parts, "Ctrl-"+string(rune('['+b-0x1b)))
		default:
			parts = append(parts, string(rune(b)))
		}
	}
	return strings.Join(parts, " ")
}

package home

import "fmt"

// MaxNameLen is the longest valid sandbox, volume or snapshot name.
const MaxNameLen = 63

// ValidName reports whether name may name a sandbox (and so a directory
// under the home): [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}. Names that could escape
// the directory ("..", "/") or hide it (".x") are rejected by the pattern.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("invalid name %q: empty", name)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("invalid name %q: longer than %d characters", name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		case i == 0:
			return fmt.Errorf("invalid name %q: must start with a letter or digit", name)
		default:
			return fmt.Errorf("invalid name %q: character %q not allowed (use letters, digits, '_', '.', '-')", name, c)
		}
	}
	return nil
}

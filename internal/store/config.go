package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// MaxConfigBytes bounds a stored sandbox config. Real configs are a few KiB;
// the bound keeps a hostile or runaway caller from bloating every listing.
const MaxConfigBytes = 1 << 20

// secretKeys are object keys whose non-empty values must never reach the
// database (architecture §1: secrets travel only through launch.json).
var secretKeys = []string{"secret", "secrets"}

// checkConfig validates a sandbox config before it is stored: a JSON object
// of at most MaxConfigBytes with no non-empty "secret"/"secrets" member at
// any depth.
func checkConfig(config []byte) error {
	if len(config) > MaxConfigBytes {
		return fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidConfig, len(config), MaxConfigBytes)
	}
	// json.Valid rejects trailing data, which a Decoder would leave unread.
	if !json.Valid(config) {
		return fmt.Errorf("%w: not valid JSON", ErrInvalidConfig)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return fmt.Errorf("%w: not a JSON object", ErrInvalidConfig)
	}
	if path := findSecret(v, "$"); path != "" {
		return fmt.Errorf("%w: %s holds secrets; pass them through the launch file, not the store", ErrInvalidConfig, path)
	}
	return nil
}

// findSecret returns the JSON path of the first non-empty secret member
// under v, or "". encoding/json bounds nesting depth, so recursion is
// bounded too.
func findSecret(v any, path string) string {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			p := path + "." + k
			for _, s := range secretKeys {
				if strings.EqualFold(k, s) && !emptyJSON(child) {
					return p
				}
			}
			if r := findSecret(child, p); r != "" {
				return r
			}
		}
	case []any:
		for i, child := range v {
			if r := findSecret(child, fmt.Sprintf("%s[%d]", path, i)); r != "" {
				return r
			}
		}
	}
	return ""
}

func emptyJSON(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// decodeStrings decodes a stored JSON string list (image config env, cmd,
// entrypoint). Image configs come from registries, so the text is treated
// as hostile even though this package wrote it: errors, never panics.
func decodeStrings(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("decode string list: %w", err)
	}
	return out, nil
}

// decodeLabels decodes a stored JSON string map (labels).
func decodeLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	var out map[string]string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("decode labels: %w", err)
	}
	return out, nil
}

// encodeJSON encodes v for a JSON text column; nil lists and maps become
// "[]" and "{}" so stored values have one canonical empty form.
func encodeJSON(v any) (string, error) {
	switch x := v.(type) {
	case []string:
		if x == nil {
			return "[]", nil
		}
	case map[string]string:
		if x == nil {
			return "{}", nil
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

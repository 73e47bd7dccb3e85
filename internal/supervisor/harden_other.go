//go:build !linux

package supervisor

import "github.com/msb-go/msb/internal/confine"

// syscallPolicy: seccomp needs Linux; confine.Seccomp reports it.
func syscallPolicy(int) confine.Policy { return confine.Policy{} }

// fileRules: Landlock needs Linux; confine.Landlock reports it.
func fileRules(string, string, []string, []string, string) []confine.Rule { return nil }

// Package archtest holds no code: its test checks the dependency direction between
// Shoal's packages, the rules drawn in docs/ARCHITECTURE.md, so that a new import that
// breaks them fails the build's tests instead of going unnoticed.
package archtest

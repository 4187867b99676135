//go:build race

package testenv

// RaceEnabled reports whether the test binary was built with -race;
// BuildShoal then builds the shoal binary with -race too.
const RaceEnabled = true

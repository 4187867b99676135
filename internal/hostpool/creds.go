package hostpool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// TokenEnv is the environment variable that holds the DigitalOcean API
// token when a pool names no token file (the name doctl and Terraform use).
const TokenEnv = "DIGITALOCEAN_TOKEN"

// LoadToken returns the provider's API token: the content of file, when
// one is named, else the value of the environment variable env. A file
// must be readable by its owner only (mode 0600 or 0400): a token others
// can read is refused, naming the file and its mode. The token itself is
// never part of an error.
func LoadToken(file, env string) (string, error) {
	if file == "" {
		tok := strings.TrimSpace(os.Getenv(env))
		if tok == "" {
			return "", fmt.Errorf("no API token: set token_file or the environment variable %s", env)
		}
		return tok, nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("token file %s does not exist", file)
		}
		return "", fmt.Errorf("token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("token file %s is not a regular file", file)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("token file %s has mode %04o: others can read it; chmod 600 %s", file, perm, file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "":
		return "", fmt.Errorf("token file %s is empty", file)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("token file %s holds more than one word; it must hold the token only", file)
	}
	return tok, nil
}

package dockerrt

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// noAuth is the X-Registry-Auth of a registry without credentials: the
// empty JSON object, which Engine 20.10 wants rather than no header.
var noAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// Push tags image id as <registry>/<app>:<12 hex digits of id> on the
// engine of cli, pushes it there, and returns the reference hosts pull it
// by: <registry>/<app>@<manifest digest>, which names these bytes only.
// The registry takes no credentials.
func Push(ctx context.Context, cli *client.Client, id, registry, app string) (string, error) {
	repo := strings.TrimSuffix(registry, "/") + "/" + app
	tag := repo + ":" + short(id)
	if err := cli.ImageTag(ctx, id, tag); err != nil {
		return "", fmt.Errorf("docker push: tag %s: %w", tag, err)
	}
	rc, err := cli.ImagePush(ctx, tag, image.PushOptions{RegistryAuth: noAuth})
	if err != nil {
		return "", fmt.Errorf("docker push %s: %w", tag, err)
	}
	defer rc.Close()
	var digest string
	err = readProgress(rc, func(aux json.RawMessage) {
		var a struct {
			Digest string `json:"Digest"`
		}
		if json.Unmarshal(aux, &a) == nil && a.Digest != "" {
			digest = a.Digest
		}
	})
	if err != nil {
		return "", fmt.Errorf("docker push %s: %w", tag, err)
	}
	if digest == "" {
		return "", fmt.Errorf("docker push %s: the engine reported no digest", tag)
	}
	return repo + "@" + digest, nil
}

// Pull pulls ref (a reference by digest, as Push returns) into the engine
// and checks that image id is then there.
func (e *Engine) Pull(ctx context.Context, ref, id string) error {
	rc, err := e.cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: noAuth})
	if err != nil {
		return fmt.Errorf("docker pull %s: %w", ref, err)
	}
	defer rc.Close()
	if err := readProgress(rc, nil); err != nil {
		return fmt.Errorf("docker pull %s: %w", ref, err)
	}
	ok, err := e.HasImage(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("docker pull %s: the engine does not hold image %s after the pull", ref, short(id))
	}
	return nil
}

// readProgress reads an engine's JSON progress stream to its end, handing
// each aux object to aux (when not nil), and returns the first error the
// stream reports.
func readProgress(r io.Reader, aux func(json.RawMessage)) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
			Aux json.RawMessage `json:"aux"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the engine's output: %w", err)
		}
		if m.Error != "" {
			msg := m.ErrorDetail.Message
			if msg == "" {
				msg = m.Error
			}
			return errors.New(strings.TrimSpace(msg))
		}
		if aux != nil && len(m.Aux) > 0 {
			aux(m.Aux)
		}
	}
}

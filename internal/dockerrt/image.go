package dockerrt

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// BuildOptions say how to build an image from a build context.
type BuildOptions struct {
	// App names the image: it is tagged shoal/<app>:<12 hex digits of its
	// ID>, the reference saved with it, so that a loaded image is never
	// taken for a dangling one.
	App string
	// Dockerfile is the Dockerfile's path inside the build context.
	Dockerfile string
	// Target is the stage to build; "" builds the last one.
	Target string
	// Args are the build arguments (ARG).
	Args map[string]string
}

// Build builds an image from buildContext (a tar of the context folder)
// and returns its ID ("sha256:<hex>") and the reference it is tagged with.
// The engine's build output goes to log. A failed step is an error that
// quotes the engine's message.
func Build(ctx context.Context, cli *client.Client, buildContext io.Reader, opts BuildOptions, log io.Writer) (id, ref string, err error) {
	if log == nil {
		log = io.Discard
	}
	args := map[string]*string{}
	for k, v := range opts.Args {
		args[k] = &v
	}
	resp, err := cli.ImageBuild(ctx, buildContext, build.ImageBuildOptions{
		Dockerfile:  opts.Dockerfile,
		Target:      opts.Target,
		BuildArgs:   args,
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{LabelApp: opts.App},
	})
	if err != nil {
		return "", "", fmt.Errorf("docker build: %w", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var m struct {
			Stream      string `json:"stream"`
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
			Aux *struct {
				ID string `json:"ID"`
			} `json:"aux"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", "", fmt.Errorf("docker build: reading the engine's output: %w", err)
		}
		switch {
		case m.Error != "":
			msg := m.ErrorDetail.Message
			if msg == "" {
				msg = m.Error
			}
			return "", "", fmt.Errorf("docker build: %s", strings.TrimSpace(msg))
		case m.Aux != nil && m.Aux.ID != "":
			id = m.Aux.ID
		case m.Stream != "":
			io.WriteString(log, m.Stream)
		case m.Status != "":
			io.WriteString(log, m.Status+"\n")
		}
	}
	if id == "" {
		return "", "", errors.New("docker build: the engine reported no image ID")
	}
	ref = "shoal/" + opts.App + ":" + short(id)
	if err := cli.ImageTag(ctx, id, ref); err != nil {
		return "", "", fmt.Errorf("docker build: tag %s: %w", ref, err)
	}
	return id, ref, nil
}

// Save returns the tar of image ref (`docker save`: its layers, config
// and manifest.json naming ref), to be stored as an artifact.
func Save(ctx context.Context, cli *client.Client, ref string) (io.ReadCloser, error) {
	rc, err := cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, fmt.Errorf("docker save %s: %w", ref, err)
	}
	return rc, nil
}

// ImageID reads a saved image tar (Save's format: Engine 20.10's legacy
// layout or the OCI layout of newer engines, both with a manifest.json)
// and returns the ID of the one image it holds ("sha256:<hex>", the
// digest of its config).
func ImageID(r io.Reader) (string, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", errors.New("saved image: no manifest.json")
		}
		if err != nil {
			return "", fmt.Errorf("saved image: %w", err)
		}
		if path.Clean(h.Name) != "manifest.json" {
			continue
		}
		var m []struct {
			Config string `json:"Config"`
		}
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
			return "", fmt.Errorf("saved image: manifest.json: %w", err)
		}
		if len(m) != 1 {
			return "", fmt.Errorf("saved image: manifest.json lists %d images, want 1", len(m))
		}
		// "<hex>.json" (legacy) or "blobs/sha256/<hex>" (OCI).
		hex := strings.TrimSuffix(path.Base(m[0].Config), ".json")
		if len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
			return "", fmt.Errorf("saved image: manifest.json: config %q is not a digest", m[0].Config)
		}
		return "sha256:" + hex, nil
	}
}

// HasImage reports whether the engine holds image id.
func (e *Engine) HasImage(ctx context.Context, id string) (bool, error) {
	_, err := e.cli.ImageInspect(ctx, id)
	if client.IsErrNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect image %s: %w", short(id), err)
	}
	return true, nil
}

// HeldLayers returns how many leading layers of diffIDs (an image's
// rootfs.diff_ids, in order) the engine holds already: the longest run the
// image shares with an image of Shoal's (labelled dev.shoal.app) the
// engine has. A `docker load` finds those by their chain and does not read
// their files, so a host need not fetch them.
func (e *Engine) HeldLayers(ctx context.Context, diffIDs []string) (int, error) {
	list, err := e.cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelApp))})
	if err != nil {
		return 0, fmt.Errorf("list images: %w", err)
	}
	best := 0
	for _, im := range list {
		ins, err := e.cli.ImageInspect(ctx, im.ID)
		if client.IsErrNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return 0, fmt.Errorf("inspect image %s: %w", short(im.ID), err)
		}
		if ins.RootFS.Type != "layers" {
			continue
		}
		n := 0
		for n < len(diffIDs) && n < len(ins.RootFS.Layers) && ins.RootFS.Layers[n] == diffIDs[n] {
			n++
		}
		best = max(best, n)
	}
	return best, nil
}

// Load loads a saved image tar into the engine (`docker load`) and
// checks that image id is then there.
func (e *Engine) Load(ctx context.Context, r io.Reader, id string) error {
	resp, err := e.cli.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load image %s: %w", short(id), err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if strings.Contains(string(b), `"error"`) {
		return fmt.Errorf("load image %s: %s", short(id), strings.TrimSpace(string(b)))
	}
	ok, err := e.HasImage(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("load image %s: the engine does not hold it after the load", short(id))
	}
	return nil
}

// BuildImage connects to the engine named by the environment (Connect),
// builds the image (Build) and returns its saved tar (Save): what
// release.BuildSpec.Image asks for. Closing the stream closes the client.
func BuildImage(ctx context.Context, buildContext io.Reader, opts BuildOptions, log io.Writer) (io.ReadCloser, error) {
	cli, err := Connect(ctx, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_, ref, err := Build(ctx, cli, buildContext, opts, log)
	if err != nil {
		cli.Close()
		return nil, err
	}
	fmt.Fprintf(log, "image %s built; saving it as the artifact\n", ref)
	rc, err := Save(ctx, cli, ref)
	if err != nil {
		cli.Close()
		return nil, err
	}
	return &clientStream{rc, cli}, nil
}

type clientStream struct {
	io.ReadCloser
	cli *client.Client
}

func (s *clientStream) Close() error { return errors.Join(s.ReadCloser.Close(), s.cli.Close()) }

// SavedImage is an image artifact as Ensure needs it: its ID, its layers,
// and how to get its parts. Both the agent and `shoal up` fill it from
// their release store, so an image reaches an engine one way.
type SavedImage struct {
	// ID is the image's ID ("sha256:<hex>", ImageID of the saved tar).
	ID string
	// DiffIDs are the layers the artifact stores apart, in order; none for
	// an artifact that is a whole saved tar.
	DiffIDs []string
	// Pull, when set, is a registry reference by digest (Push): the image
	// is pulled from there, and Fetch and Open are not called.
	Pull string
	// Fetch, when not nil, makes the parts of layers held.. available
	// (an agent fetches them from the server).
	Fetch func(ctx context.Context, held int) error
	// Open returns the tar `docker load` reads, the first held layers left
	// empty (release.Store.OpenImage).
	Open func(ctx context.Context, held int) (io.ReadCloser, error)
}

// Ensure makes the engine hold image img: nothing when it does; else it
// pulls img.Pull when set, or counts the layers it holds already
// (HeldLayers), fetches the others (img.Fetch) and loads the image from
// img.Open.
func (e *Engine) Ensure(ctx context.Context, img SavedImage) error {
	has, err := e.HasImage(ctx, img.ID)
	if err != nil || has {
		return err
	}
	if img.Pull != "" {
		if err := e.Pull(ctx, img.Pull, img.ID); err != nil {
			return err
		}
		e.log.Info("image pulled", "image", short(img.ID), "ref", img.Pull)
		return nil
	}
	held := 0
	if len(img.DiffIDs) > 0 {
		if held, err = e.HeldLayers(ctx, img.DiffIDs); err != nil {
			return err
		}
	}
	if img.Fetch != nil {
		if err := img.Fetch(ctx, held); err != nil {
			return err
		}
	}
	rc, err := img.Open(ctx, held)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := e.Load(ctx, rc, img.ID); err != nil {
		return err
	}
	e.log.Info("image loaded", "image", short(img.ID), "layers", len(img.DiffIDs), "layers_held", held)
	return nil
}

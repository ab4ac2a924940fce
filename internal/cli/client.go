package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/internal/config"
)

// clientConfig is how the client commands reach the server. It goes through
// internal/config like the daemons' configs, so --server, HANGAR_SERVER,
// --token and HANGAR_TOKEN follow the same precedence (flag > env).
type clientConfig struct {
	Server  string        `yaml:"server" help:"URL of the hangar server"`
	Token   config.Secret `yaml:"token" help:"user bearer token"`
	Timeout time.Duration `yaml:"timeout" help:"bound on one API request"`
}

func defaultClientConfig() clientConfig {
	return clientConfig{Server: "http://127.0.0.1:7070", Timeout: time.Minute}
}

// Validate reports every problem at once.
func (c *clientConfig) Validate() error {
	var errs []error
	u, err := url.Parse(c.Server)
	switch {
	case c.Server == "":
		errs = append(errs, errors.New("server: empty; set --server or HANGAR_SERVER"))
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("server: %q is not an http:// or https:// URL", c.Server))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %v is not positive", c.Timeout))
	}
	return errors.Join(errs...)
}

var clientSchema = mustSchema(&clientConfig{})

func mustSchema(cfg any) *config.Schema {
	s, err := config.NewSchema(cfg)
	if err != nil {
		panic(err) // a programming error in a Config struct, caught by any test
	}
	return s
}

// addClientFlags puts --server, --token and --timeout on a command group.
func addClientFlags(cmd *cobra.Command) {
	def := defaultClientConfig()
	if err := clientSchema.AddFlags(cmd.PersistentFlags(), &def); err != nil {
		panic(err)
	}
}

// client loads the client configuration of cmd and returns an API client.
func (a *app) client(cmd *cobra.Command) (*api.ClientWithResponses, error) {
	cfg := defaultClientConfig()
	if err := clientSchema.Load(&cfg, config.Sources{LookupEnv: a.o.LookupEnv, Flags: cmd.Flags()}); err != nil {
		return nil, err
	}
	opts := []api.ClientOption{api.WithHTTPClient(&http.Client{Timeout: cfg.Timeout})}
	if cfg.Token != "" {
		opts = append(opts, api.WithRequestEditorFn(api.BearerAuth(cfg.Token.Reveal())))
	}
	c, err := api.NewClientWithResponses(cfg.Server, opts...)
	if err != nil {
		return nil, usageErrorf("server %q: %v", cfg.Server, err)
	}
	return c, nil
}

// The generated responses, by the typed body a success carries.
type (
	answer interface {
		StatusCode() int
		GetBody() []byte
	}
	answer200[T any] interface {
		answer
		GetJSON200() *T
	}
	answer201[T any] interface {
		answer
		GetJSON201() *T
	}
)

// ok200 turns a generated call's outcome into its 200 body or an error.
func ok200[T any, R answer200[T]](what string, rsp R, err error) (*T, error) {
	if err != nil {
		return nil, callError(what, err)
	}
	return typed(what, rsp, rsp.GetJSON200())
}

// ok201 is ok200 for the operations that create (201).
func ok201[T any, R answer201[T]](what string, rsp R, err error) (*T, error) {
	if err != nil {
		return nil, callError(what, err)
	}
	return typed(what, rsp, rsp.GetJSON201())
}

// ok204 is for the operations that answer 204 No Content.
func ok204(what string, rsp answer, err error) error {
	if err != nil {
		return callError(what, err)
	}
	if err := api.FromResponse(rsp.StatusCode(), rsp.GetBody()); err != nil {
		return err
	}
	return nil
}

// callError is a call that got no HTTP answer: ErrUnreachable (exit code
// 5), unless the command was cancelled.
func callError(what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w: %v", what, ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// typed returns the typed body of a success, the api error of an error
// status (api.FromResponse, so errors.Is matches the api sentinels), or an
// error quoting a success that lacks the expected body.
func typed[T any](what string, rsp answer, ok *T) (*T, error) {
	if err := api.FromResponse(rsp.StatusCode(), rsp.GetBody()); err != nil {
		return nil, err
	}
	if ok == nil {
		return nil, fmt.Errorf("%s: unexpected answer: HTTP %d %.200s", what, rsp.StatusCode(), rsp.GetBody())
	}
	return ok, nil
}

// validID checks an id before any path is built from it; the error is
// invalid_request, exit code 2, without asking the server.
func validID(kind, id string) error { return api.ValidateID(kind, id) }

// clientFor is the client of a command whose argument is the id of a kind:
// the id is checked first (validID), so a bad one fails without a server.
func (a *app) clientFor(cmd *cobra.Command, kind, id string) (*api.ClientWithResponses, error) {
	if err := validID(kind, id); err != nil {
		return nil, err
	}
	return a.client(cmd)
}

// getInstance reads one instance.
func getInstance(ctx context.Context, cl *api.ClientWithResponses, id string) (*api.Instance, error) {
	rsp, err := cl.GetInstanceWithResponse(ctx, id)
	return ok200[api.Instance]("get instance "+id, rsp, err)
}

// getSnapshot reads one snapshot.
func getSnapshot(ctx context.Context, cl *api.ClientWithResponses, id string) (*api.Snapshot, error) {
	rsp, err := cl.GetSnapshotWithResponse(ctx, id)
	return ok200[api.Snapshot]("get snapshot "+id, rsp, err)
}

// printJSON writes v as the one JSON document of stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.o.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// show prints v as the one JSON document of stdout with --json, else as the
// table print makes of it.
func show[T any](a *app, v *T, print func(io.Writer, *T) error) error {
	if a.json {
		return a.printJSON(v)
	}
	return print(a.o.Stdout, v)
}

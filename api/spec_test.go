package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// publicOps are the operations that need no token.
var publicOps = []string{"getHealth", "getHostHealth"}

// errorStatuses are the statuses an error response may have: those of the
// codes (StatusFor), never anything else.
func errorStatuses() map[int]bool {
	m := map[int]bool{}
	for _, c := range api.Codes {
		m[api.StatusFor(c)] = true
	}
	return m
}

func loadSpec(t *testing.T, path string) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = true
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("validate %s: %v", path, err)
	}
	return doc
}

// TestSpecRules loads both specs with kin-openapi, validates them, and
// checks the rules the project sets for its APIs.
func TestSpecRules(t *testing.T) {
	for _, path := range []string{"openapi.yaml", "host/hostapi.yaml"} {
		t.Run(path, func(t *testing.T) {
			doc := loadSpec(t, path)
			var problems []string
			report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
			w := &schemaWalker{report: report, seen: map[walkKey]bool{}}

			names := make([]string, 0, len(doc.Components.Schemas))
			for name := range doc.Components.Schemas {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				s := doc.Components.Schemas[name]
				if s.Value.Description == "" {
					report("schema %s has no description", name)
				}
				w.walk("#/components/schemas/"+name, s, false)
			}
			checkOperations(doc, w, report)
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
}

func checkOperations(doc *openapi3.T, w *schemaWalker, report func(string, ...any)) {
	statuses := errorStatuses()
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" || op.Summary == "" {
				report("%s: needs an operationId and a summary", where)
			}
			public := op.Security != nil && len(*op.Security) == 0
			if public != slices.Contains(publicOps, op.OperationID) {
				report("%s (%s): public=%v; only %v may skip the token", where, op.OperationID, public, publicOps)
			}
			if !public && op.Responses.Value("401") == nil {
				report("%s: does not document 401", where)
			}
			params := append(slices.Clone(item.Parameters), op.Parameters...)
			hasPathParam := false
			for _, p := range params {
				if p.Value.Description == "" {
					report("%s: parameter %s has no description", where, p.Value.Name)
				}
				w.walk(where+" parameter "+p.Value.Name, p.Value.Schema, false)
				if p.Value.In == "path" {
					hasPathParam = true
					s := p.Value.Schema.Value
					if s.Pattern != api.IDPattern || s.MaxLength == nil {
						report("%s: path parameter %s must have pattern %s and a maxLength", where, p.Value.Name, api.IDPattern)
					}
				}
			}
			if op.RequestBody != nil {
				rb := op.RequestBody.Value
				if len(rb.Content) != 1 || rb.Content.Get("application/json") == nil {
					report("%s: request body must be application/json only", where)
				} else {
					w.walk(where+" body", rb.Content.Get("application/json").Schema, true)
				}
			}
			if (hasPathParam || op.RequestBody != nil || hasQuery(params)) && op.Responses.Value("400") == nil {
				report("%s: takes input but does not document 400", where)
			}
			success := false
			for code, r := range op.Responses.Map() {
				status, err := strconv.Atoi(code)
				if err != nil {
					report("%s: response %q is not a status", where, code)
					continue
				}
				if r.Value.Description == nil || *r.Value.Description == "" {
					report("%s %d: response has no description", where, status)
				}
				if status < 400 {
					success = success || status < 300
					continue
				}
				if !statuses[status] {
					report("%s: documents %d, which no error code has", where, status)
				}
				mt := r.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil || !strings.HasSuffix(mt.Schema.Ref, "#/components/schemas/Error") {
					report("%s %d: error response must be application/json with the Error schema", where, status)
				}
			}
			if !success {
				report("%s: documents no 2xx response", where)
			}
		}
	}
}

func hasQuery(params openapi3.Parameters) bool {
	return slices.ContainsFunc(params, func(p *openapi3.ParameterRef) bool { return p.Value.In == "query" })
}

type walkKey struct {
	s      *openapi3.Schema
	inBody bool
}

// schemaWalker checks every schema reachable from a root: each property is
// described and each object closes additionalProperties.
type schemaWalker struct {
	report func(string, ...any)
	seen   map[walkKey]bool
}

func (w *schemaWalker) walk(where string, ref *openapi3.SchemaRef, inBody bool) {
	if ref == nil || ref.Value == nil {
		return
	}
	s := ref.Value
	k := walkKey{s, inBody}
	if w.seen[k] {
		return
	}
	w.seen[k] = true
	// Every object with properties is closed: request bodies so that
	// unknown fields are rejected, the rest because host request bodies
	// (heartbeat) carry the public resource types.
	if len(s.Properties) > 0 {
		ap := s.AdditionalProperties
		if ap.Has == nil || *ap.Has || ap.Schema != nil {
			if inBody {
				w.report("%s: request body object must set additionalProperties: false", where)
			} else {
				w.report("%s: object must set additionalProperties: false", where)
			}
		}
	}
	for name, p := range s.Properties {
		if p.Value == nil || p.Value.Description == "" {
			w.report("%s: property %s has no description", where, name)
		}
		w.walk(where+"."+name, p, inBody)
	}
	for i, sub := range s.AllOf {
		w.walk(fmt.Sprintf("%s.allOf[%d]", where, i), sub, inBody)
	}
	w.walk(where+"[]", s.Items, inBody)
	w.walk(where+"{}", s.AdditionalProperties.Schema, inBody)
}

// TestSpecErrorCodes: the ErrorCode enum of the spec is exactly Codes, and
// the ID and Name patterns are IDPattern.
func TestSpecErrorCodes(t *testing.T) {
	doc := loadSpec(t, "openapi.yaml")
	var enum []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		enum = append(enum, v.(string))
	}
	var codes []string
	for _, c := range api.Codes {
		codes = append(codes, string(c))
		if !c.Valid() {
			t.Errorf("code %q is not Valid()", c)
		}
	}
	if !slices.Equal(enum, codes) {
		t.Errorf("spec ErrorCode enum %v != api.Codes %v", enum, codes)
	}
	for _, name := range []string{"ID", "Name"} {
		if got := doc.Components.Schemas[name].Value.Pattern; got != api.IDPattern {
			t.Errorf("schema %s pattern %q != api.IDPattern %q", name, got, api.IDPattern)
		}
	}
}

// TestSpecCoversDesign: every endpoint of DESIGN §7 is in the public spec.
func TestSpecCoversDesign(t *testing.T) {
	doc := loadSpec(t, "openapi.yaml")
	want := []string{
		"POST /v1/instances", "GET /v1/instances",
		"GET /v1/instances/{id}", "DELETE /v1/instances/{id}",
		"POST /v1/instances/{id}/standby", "POST /v1/instances/{id}/restore", "POST /v1/instances/{id}/fork",
		"POST /v1/instances/{id}/snapshots", "GET /v1/snapshots",
		"GET /v1/snapshots/{id}", "DELETE /v1/snapshots/{id}",
		"POST /v1/snapshots/{id}/fork", "POST /v1/snapshots/{id}/restore",
		"GET /v1/hosts", "GET /healthz", "GET /metrics", "GET /openapi.yaml",
	}
	for _, ep := range want {
		method, path, _ := strings.Cut(ep, " ")
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("spec lacks %s", ep)
		}
	}
	// Optional bodies: standby and the restores accept no body at all.
	for _, path := range []string{"/v1/instances/{id}/standby", "/v1/instances/{id}/restore", "/v1/snapshots/{id}/restore"} {
		if rb := doc.Paths.Value(path).Post.RequestBody; rb == nil || rb.Value.Required {
			t.Errorf("POST %s: body must be optional", path)
		}
	}
}

// TestEmbeddedSpecs: the generated GetSwagger of both packages decodes (the
// host spec resolves its references into package api), and OpenAPIYAML is the
// file as written.
func TestEmbeddedSpecs(t *testing.T) {
	pub, err := api.GetSwagger()
	if err != nil {
		t.Fatalf("api.GetSwagger: %v", err)
	}
	if pub.Paths.Value("/v1/instances") == nil {
		t.Error("api.GetSwagger lacks /v1/instances")
	}
	host, err := hostapi.GetSwagger()
	if err != nil {
		t.Fatalf("hostapi.GetSwagger: %v", err)
	}
	if host.Paths.Value("/cluster/v1/hosts/{id}/heartbeat") == nil {
		t.Error("hostapi.GetSwagger lacks the heartbeat")
	}
	if !strings.HasPrefix(api.OpenAPIYAML(), "openapi: 3.0.") {
		t.Errorf("OpenAPIYAML starts with %.20q", api.OpenAPIYAML())
	}
	_ = http.StatusOK
}

package api

import _ "embed"

// openAPIYAML is openapi.yaml byte for byte, comments and all, for
// GET /openapi.yaml. GetSwagger (generated) gives the parsed document for
// request validation.
//
//go:embed openapi.yaml
var openAPIYAML string

// OpenAPIYAML returns the public API's OpenAPI document as written in the
// source tree.
func OpenAPIYAML() string { return openAPIYAML }

// OpenAPIContentType is the media type GET /openapi.yaml answers with.
const OpenAPIContentType = "application/yaml"

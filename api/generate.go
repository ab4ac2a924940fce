package api

// The Go code of this package is generated from openapi.yaml by oapi-codegen,
// pinned by the tool directive in go.mod. After editing the spec, run
//
//	go generate ./api/...
//
// and commit the spec and the *.gen.go files together: TestGeneratedUpToDate
// reruns exactly these lines and fails when the committed code differs.

//go:generate go tool oapi-codegen -config oapi-codegen-types.yaml -o types.gen.go openapi.yaml
//go:generate go tool oapi-codegen -config oapi-codegen-server.yaml -o server.gen.go openapi.yaml
//go:generate go tool oapi-codegen -config oapi-codegen-client.yaml -o client.gen.go openapi.yaml

package hostapi

// Generated from hostapi.yaml (which references ../openapi.yaml) by
// oapi-codegen, pinned by the tool directive in go.mod. Run
//
//	go generate ./api/...
//
// and commit the spec and the *.gen.go files together; the drift test in
// package api reruns these lines too.

//go:generate go tool oapi-codegen -config oapi-codegen-types.yaml -o types.gen.go hostapi.yaml
//go:generate go tool oapi-codegen -config oapi-codegen-server.yaml -o server.gen.go hostapi.yaml
//go:generate go tool oapi-codegen -config oapi-codegen-client.yaml -o client.gen.go hostapi.yaml

// Package api holds kvstack's HTTP contract, openapi.yaml (OpenAPI 3.1),
// embedded so that tests load the file the repository ships.
package api

import _ "embed"

// OpenAPI is openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
